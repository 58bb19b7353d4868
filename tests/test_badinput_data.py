"""Bad input at the data boundary (issue 16, "Nothing silently wrong"): each bad input gives a clear error or warning.

`CASES` lists one entry per bad input: what it is, what the user sees, and a zero-argument `check` that raises
(an `AssertionError`) unless the input gives that message. The docs render it as a table."""
import os, pickle, shutil, stat, tempfile, warnings
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from ssl_learn.core import get_tier
from ssl_learn.data import (ImageData, get_data, load_cifar10, load_image_folder, prepare_data, show_images)

# ---------------------------------------------------------------------------------------------------- helpers
def _img(path, shape=(8, 8, 3), seed=0, value=None):
    a = (np.full(shape, value, np.uint8) if value is not None
         else np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path); return a

def _classes(root, spec, shape=(8, 8, 3)):
    "Make `root/<class>/<i>.png` for each class: n images, or an empty folder for n == 0."
    for c, n in spec.items():
        (root/c).mkdir(parents=True, exist_ok=True)
        for i in range(n): _img(root/c/f'{i}.png', shape, seed=i, value=10 * (ord(c[0]) % 20) + i)
    return root

def _raises(exc, match, fn):
    with pytest.raises(exc, match=match): fn()

def _warns(match, fn):
    with pytest.warns(UserWarning, match=match): return fn()

def _in_tmp(fn):
    "A zero-argument callable that runs `fn(tmp_dir)` in a fresh temporary folder."
    def check():
        with tempfile.TemporaryDirectory() as d: return fn(Path(d))
    check.__name__ = fn.__name__
    return check

_U8 = lambda *s: torch.zeros(*s, dtype=torch.uint8)
_TEN = lambda: ImageData(_U8(10, 1, 8, 8), torch.arange(10) % 2, ['a', 'b'], 'ten')

# ---------------------------------------------------------------------------------------------------- 1. classes
@_in_tmp
def case_test_only_class(t):
    _classes(t/'train', {'a': 2, 'b': 2}); _classes(t/'test', {'a': 1, 'b': 1, 'c': 1})
    _raises(ValueError, r"\['c'\] not among the training split's classes", lambda: get_data(f'folder:{t}'))

@_in_tmp
def case_train_only_class(t):
    _classes(t/'train', {'a': 2, 'b': 2, 'c': 2}); _classes(t/'test', {'a': 1, 'c': 1})
    return _warns(r"no images for class\(es\) \['b'\]", lambda: get_data(f'folder:{t}'))

@_in_tmp
def case_empty_class_folder(t):
    _classes(t, {'a': 2, 'b': 0, 'c': 2})
    return _warns(r"\['b'\] hold no images", lambda: load_image_folder(t))

@_in_tmp
def case_stray_files_beside_class_folders(t):
    _classes(t, {'a': 2, 'b': 2}); _img(t/'stray.png')
    _warns(r"1 file\(s\) directly in .* not in a class folder", lambda: load_image_folder(t))

def test_test_only_class_is_an_error():
    case_test_only_class()

def test_train_only_class_keeps_the_training_labels():
    tr, te = case_train_only_class()
    assert tr.classes == te.classes == ['a', 'b', 'c']
    assert te.y.tolist() == [0, 2]            # c keeps its training label 2 (was 1: every label after b shifted)

def test_empty_class_folder_is_not_a_class():
    d = case_empty_class_folder()
    assert d.classes == ['a', 'c'] and d.y.tolist() == [0, 0, 1, 1]

def test_load_image_folder_takes_the_class_list(tmp_path):
    _classes(tmp_path, {'b': 1, 'c': 1})
    with pytest.warns(UserWarning, match=r"\['a'\]"): d = load_image_folder(tmp_path, classes=['a', 'b', 'c'])
    assert d.classes == ['a', 'b', 'c'] and d.y.tolist() == [1, 2]

def test_files_beside_class_folders_warn():
    case_stray_files_beside_class_folders()

# ---------------------------------------------------------------------------------------------------- 2. sizes
@_in_tmp
def case_one_huge_image(t):
    for i in range(5): _img(t/f'{i}.png', (8, 8, 3), seed=i)
    _img(t/'huge.png', (300, 300, 3))
    return _warns(r"resized 1 of 6 images to 8×8 \(1 downscaled, 0 upscaled", lambda: load_image_folder(t))

@_in_tmp
def case_test_split_other_size(t):
    for c in 'ab':
        for i in range(3): _img(t/'train'/c/f'{i}.png', (8, 8, 3), seed=i)
        _img(t/'train'/c/'big.png', (12, 12, 3))
        for i in range(2): _img(t/'test'/c/f'{i}.png', (12, 12, 3), seed=i)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        tr, te = get_data(f'folder:{t}')
    msgs = [str(x.message) for x in w]
    assert any('train: resized 2 of 8 images to 8×8 (2 downscaled, 0 upscaled' in m for m in msgs), msgs
    assert any("test: resized 4 of 4 images to 8×8 (4 downscaled, 0 upscaled, 0 only cropped): the training split's "
               "size" in m for m in msgs), msgs
    return tr, te

def test_one_outlier_never_upscales_the_data_set():
    assert case_one_huge_image().x.shape == (6, 3, 8, 8)   # was 154×154: the median of the distinct sizes

def test_most_common_size_wins(tmp_path):
    for i, s in enumerate([10, 10, 10, 12, 14]): _img(tmp_path/f'{i}.png', (s, s, 3), seed=i)
    with pytest.warns(UserWarning, match='different sizes'): d = load_image_folder(tmp_path)
    assert d.shape == (3, 10, 10)

def test_train_and_test_share_one_size():
    tr, te = case_test_split_other_size()
    assert tr.shape == te.shape == (3, 8, 8)

def test_prepare_data_uses_the_tier_size(tmp_path):
    for c in 'ab':
        for i in range(10): _img(tmp_path/'train'/c/f'{i}.png', (12, 12, 3), seed=i)
        for i in range(4): _img(tmp_path/'test'/c/f'{i}.png', (12, 12, 3), seed=i)
    parts = prepare_data(f'folder:{tmp_path}', get_tier('test', size=8))
    assert all(p.shape == (3, 8, 8) for p in parts)
    fm = (ImageData(_U8(6, 1, 28, 28), torch.arange(6) % 2), ImageData(_U8(4, 1, 28, 28), torch.arange(4) % 2))
    assert prepare_data(fm, get_tier('test', size=32))[0].shape == (1, 32, 32)   # the tier's size, not ignored

# ---------------------------------------------------------------------------------------------------- 3. tensors
case_float_01_pixels = lambda: _raises(ValueError, r"must be uint8.*\(x\*255\)\.round\(\)\.to\(torch\.uint8\)",
                                       lambda: ImageData(torch.rand(2, 3, 8, 8)))
case_float_255_pixels = lambda: _raises(ValueError, r"must be uint8.*0-255.*x\.round\(\)\.clamp\(0, 255\)",
                                        lambda: ImageData(torch.rand(2, 3, 8, 8) * 255))
case_nhwc = lambda: _raises(ValueError, r"looks like NHWC.*x\.permute\(0,3,1,2\)", lambda: ImageData(_U8(2, 8, 8, 3)))
case_float_labels = lambda: _raises(ValueError, "labels must be integers",
                                    lambda: ImageData(_U8(2, 1, 8, 8), torch.tensor([0.7, 1.2])))
case_negative_labels = lambda: _raises(ValueError, "labels must be ≥ 0",
                                       lambda: ImageData(_U8(2, 1, 8, 8), torch.tensor([0, -1])))
case_label_beyond_classes = lambda: _raises(ValueError, "label 2 but only 2 class names",
                                            lambda: ImageData(_U8(2, 1, 8, 8), torch.tensor([0, 2]), ['a', 'b']))
case_subset_negative = lambda: _raises(ValueError, r"n must be None or a positive int ≤ 10, got -5",
                                       lambda: _TEN().subset(-5))
case_subset_too_many = lambda: _raises(ValueError, r"n must be None or a positive int ≤ 10, got 11",
                                       lambda: _TEN().subset(11))
case_split_float = lambda: _raises(ValueError, r"cannot hold out 2\.5 of 10", lambda: _TEN().split(2.5))
case_show_255_floats = lambda: _raises(ValueError, r"0-255.*x / 255", lambda: show_images(torch.rand(2, 3, 8, 8) * 255))

def test_float_pixels_say_how_to_convert():
    case_float_01_pixels(); case_float_255_pixels(); case_show_255_floats()

def test_nhwc_is_named():
    case_nhwc()
    assert ImageData(_U8(2, 3, 8, 3)).shape == (3, 8, 3)   # NCHW with a narrow width is not mistaken for NHWC

def test_labels_must_be_nonnegative_integers():
    case_float_labels(); case_negative_labels(); case_label_beyond_classes()
    assert ImageData(_U8(2, 1, 8, 8), np.array([0, 1], np.uint8)).y.dtype == torch.long

def test_subset_and_split_check_n():
    case_subset_negative(); case_subset_too_many(); case_split_float()
    for bad in (0, 2.5, True, '3'): _raises(ValueError, 'positive int', lambda: _TEN().subset(bad))
    d = _TEN()
    assert d.subset(None) is d and d.subset(10) is d and len(d.subset(np.int64(4))) == 4

# ---------------------------------------------------------------------------------------------------- 4. paths
@_in_tmp
def case_missing_dataset_folder(t):
    _raises(FileNotFoundError, r"data set folder .*nowhere does not exist", lambda: get_data(f'folder:{t}/nowhere'))

@_in_tmp
def case_skip_bad_files(t):
    _classes(t/'train', {'a': 2, 'b': 2}); _classes(t/'test', {'a': 1, 'b': 1})
    (t/'train'/'a'/'notes.txt').write_text('hi'); (t/'train'/'b'/'bad.png').write_bytes(b'not a png')
    (t/'test'/'b'/'cut.jpg').write_bytes(b'\xff\xd8\xff\xe0 cut')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        tr, te = get_data(f'folder:{t}', on_error='skip')
    msgs = [str(x.message) for x in w]
    assert len(msgs) == 1 and 'skipped 3 unreadable or non-image file(s)' in msgs[0], msgs
    assert 'notes.txt' in msgs[0] and 'bad.png' in msgs[0] and 'cut.jpg' in msgs[0]
    return tr, te

def test_missing_dataset_folder_says_so():
    case_missing_dataset_folder()

def test_skip_bad_files_one_warning():
    tr, te = case_skip_bad_files()
    assert len(tr) == 4 and len(te) == 2

def test_on_error_reaches_prepare_data(tmp_path):
    _classes(tmp_path/'train', {'a': 6, 'b': 6}); _classes(tmp_path/'test', {'a': 2, 'b': 2})
    (tmp_path/'train'/'a'/'x.txt').write_text('x')
    with pytest.raises(ValueError, match='x.txt'): prepare_data(f'folder:{tmp_path}', 'test')
    with pytest.warns(UserWarning, match='skipped 1'): prepare_data(f'folder:{tmp_path}', 'test', on_error='skip')
    with pytest.raises(ValueError, match='on_error'): get_data(f'folder:{tmp_path}', on_error='ignore')

# ---------------------------------------------------------------------------------------------------- 5. CIFAR-10
class _Payload:
    "Unpickling this calls `open(path, 'w')`: it creates a file. A real attack would run a command instead."
    def __init__(self, path): self.path = path
    def __reduce__(self): return (open, (self.path, 'w'))

def _cifar(root, first=None, n=4, protocol=4):
    d = root/'cifar-10-batches-py'; d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        b = {'batch_label': 'fake', 'data': rng.integers(0, 255, (n, 3072), dtype=np.uint8),
             'labels': list(range(n)), 'filenames': [f'{i}.png' for i in range(n)]}
        with open(d/name, 'wb') as f: pickle.dump(b, f, protocol=protocol)
    if first is not None:
        with open(d/'data_batch_1', 'wb') as f: pickle.dump(first, f, protocol=protocol)
    return d

@_in_tmp
def case_malicious_cifar_pickle(t):
    marker = t/'pwned'
    _cifar(t, first={'data': _Payload(str(marker)), 'labels': [0]})
    _raises(ValueError, r"data_batch_1: refusing to unpickle io\.open.*nothing in it was run",
            lambda: load_cifar10('train', t))
    assert not marker.exists(), 'the pickle payload ran'

@_in_tmp
def case_cifar_bad_labels(t):
    _cifar(t, first={'data': np.zeros((2, 3072), np.uint8), 'labels': [0, 12]})
    _raises(ValueError, r"data_batch_1: labels must be 0\.\.9", lambda: load_cifar10('train', t))

def test_malicious_cifar_pickle_does_not_run():
    case_malicious_cifar_pickle()

def test_cifar_batch_content_is_checked():
    case_cifar_bad_labels()

def test_fake_cifar_batches_load(tmp_path):
    _cifar(tmp_path, n=3)
    tr = load_cifar10('train', tmp_path)
    assert tr.x.shape == (15, 3, 32, 32) and tr.y.tolist() == [0, 1, 2] * 5
    d = _cifar(tmp_path/'b', n=2)
    with open(d/'test_batch', 'wb') as f:       # bytes keys, as pickle.load(encoding='bytes') users write them
        pickle.dump({b'data': np.ones((2, 3072), np.uint8), b'labels': [3, 4]}, f, protocol=4)
    te = load_cifar10('test', tmp_path/'b')
    assert te.y.tolist() == [3, 4] and (te.x == 1).all()

def _py2_batch(data, labels):
    "The bytes of a CIFAR-10 batch as Python 2 pickled it (protocol 2, str not bytes): the real files' format."
    import struct
    s = lambda b: b'U' + bytes([len(b)]) + b                          # SHORT_BINSTRING
    arr = (b'cnumpy.core.multiarray\n_reconstruct\n' b'cnumpy\nndarray\n' b'K\x00\x85' + s(b'b') + b'\x87R'
           b'(K\x01' + b'M' + struct.pack('<H', data.shape[0]) + b'M' + struct.pack('<H', data.shape[1]) + b'\x86'
           b'cnumpy\ndtype\n' + s(b'u1') + b'K\x00K\x01\x87R'
           b'(K\x03' + s(b'|') + b'NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb'
           b'\x89' + b'T' + struct.pack('<I', data.nbytes) + data.tobytes() + b'tb')
    labs = b']' + b'(' + b''.join(b'K' + bytes([v]) for v in labels) + b'e'
    return b'\x80\x02}(' + s(b'batch_label') + s(b'x') + s(b'data') + arr + s(b'labels') + labs + b'u.'

def test_python2_cifar_batches_load(tmp_path):
    d = _cifar(tmp_path)
    data = np.random.default_rng(1).integers(0, 255, (3, 3072), dtype=np.uint8)
    (d/'test_batch').write_bytes(_py2_batch(data, [9, 0, 5]))
    te = load_cifar10('test', tmp_path)
    assert te.y.tolist() == [9, 0, 5] and torch.equal(te.x, torch.from_numpy(data).view(3, 3, 32, 32))

# ---------------------------------------------------------------------------------------------------- 6. image files
@_in_tmp
def case_animated_gif(t):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (40, 200)]
    frames[0].save(t/'anim.gif', save_all=True, append_images=frames[1:], duration=100, loop=0)
    _img(t/'still.png', value=40)
    return _warns(r"1 animated image\(s\).*first frame.*anim\.gif", lambda: load_image_folder(t))

@_in_tmp
def case_decompression_bomb(t):
    _img(t/'big.png', (64, 64, 3))
    old = Image.MAX_IMAGE_PIXELS; Image.MAX_IMAGE_PIXELS = 1000     # a 4096-pixel image is > 2× the limit
    try: _raises(ValueError, r"big\.png: cannot decode image \(DecompressionBombError.*larger than PIL's limit",
                 lambda: load_image_folder(t))
    finally: Image.MAX_IMAGE_PIXELS = old

def test_16bit_png_is_scaled_to_8_bits(tmp_path):
    a = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(a).save(tmp_path/'deep.png')
    assert Image.open(tmp_path/'deep.png').mode == 'I;16'
    d = load_image_folder(tmp_path)
    assert d.shape == (1, 8, 8)
    np.testing.assert_array_equal(d.x[0, 0].numpy(), np.round(a / 257).astype(np.uint8))   # was clipped to 255

def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new('CMYK', (8, 8), (0, 255, 255, 0)).save(tmp_path/'red.jpg')   # pure red in CMYK
    _img(tmp_path/'grey.png', (8, 8), value=0)
    d = load_image_folder(tmp_path)
    assert d.shape == (3, 8, 8)
    assert d.x[0, :, 4, 4].tolist() == [0, 0, 0] and d.x[1, 0].float().mean() > 240 and d.x[1, 1:].float().mean() < 15

def test_exif_rotation_is_applied(tmp_path):
    a = np.zeros((16, 8, 3), np.uint8); a[:8] = 255                       # 8 wide, 16 tall: white top half
    ex = Image.Exif(); ex[0x0112] = 6                                      # Orientation 6: rotate 90° clockwise
    Image.fromarray(a).save(tmp_path/'photo.jpg', exif=ex, quality=95)
    d = load_image_folder(tmp_path)
    assert d.shape == (3, 8, 16)                                           # shown 16 wide, 8 tall
    assert d.x[0, :, :, 12:].float().mean() > 200 and d.x[0, :, :, :4].float().mean() < 50   # top went right

def test_animated_gif_uses_first_frame_and_says_so():
    d = case_animated_gif()
    assert (d.x[0].float() - 40).abs().max() < 8                           # the first frame, not the second (200)

def test_decompression_bomb_names_the_file():
    case_decompression_bomb()

def test_names_differing_only_in_case_do_not_collide(tmp_path):
    _img(tmp_path/'cat.png', value=10); _img(tmp_path/'Cat.png', value=20); _img(tmp_path/'CAT.PNG', value=30)
    files = sorted(p.name for p in tmp_path.iterdir())
    if len(files) < 3: pytest.skip('case-insensitive file system')
    d = load_image_folder(tmp_path)
    assert len(d) == 3 and sorted(int(v) for v in d.x[:, 0, 0, 0]) == [10, 20, 30]

def test_read_only_data_set(tmp_path):
    _classes(tmp_path/'train', {'a': 2, 'b': 2}); _classes(tmp_path/'test', {'a': 1, 'b': 1})
    _cifar(tmp_path/'c', n=2)
    paths = sorted(tmp_path.rglob('*'), reverse=True)
    try:
        for p in paths: p.chmod(stat.S_IREAD | (stat.S_IEXEC if p.is_dir() else 0))
        tmp_path.chmod(stat.S_IREAD | stat.S_IEXEC)
        tr, te = get_data(f'folder:{tmp_path}')
        assert len(tr) == 4 and len(te) == 2
        assert len(load_cifar10('test', tmp_path/'c')) == 2
        assert not any(p not in paths for p in tmp_path.rglob('*'))          # nothing was written
    finally:
        for p in [tmp_path, *paths]: p.chmod(stat.S_IRWXU)

# ---------------------------------------------------------------------------------------------------- the table
CASES = [
    dict(input='test/ has a class folder train/ lacks', sees="error: class folder(s) ['c'] not among the training "
         "split's classes", check=case_test_only_class),
    dict(input='train/ has a class folder test/ lacks', sees="warning: no images for class(es) ['b'] of the "
         "training split's classes", check=case_train_only_class),
    dict(input='an empty class folder', sees="warning: class folder(s) ['b'] hold no images: not counted as classes",
         check=case_empty_class_folder),
    dict(input='image files beside the class folders', sees='warning: N file(s) directly in PATH are not in a class '
         'folder: ignored', check=case_stray_files_beside_class_folders),
    dict(input='one 300×300 image among 8×8 ones', sees='warning: resized 1 of 6 images to 8×8 (1 downscaled, 0 '
         'upscaled)', check=case_one_huge_image),
    dict(input='test images of another size than train', sees='warning: resized 4 of 4 images to 8×8 (…): the '
         "training split's size", check=case_test_split_other_size),
    dict(input='float pixels in [0, 1]', sees='error: must be uint8; for [0,1] floats use '
         '(x*255).round().to(torch.uint8)',
         check=case_float_01_pixels),
    dict(input='float pixels in 0-255', sees='error: must be uint8; … look like 0-255: use '
         'x.round().clamp(0, 255).to(torch.uint8)',
         check=case_float_255_pixels),
    dict(input='show_images given 0-255 floats', sees='error: float values … look like 0-255 pixels; pass '
         'the uint8 images or x / 255',
         check=case_show_255_floats),
    dict(input='channels-last images (N,H,W,C)', sees='error: looks like NHWC; use x.permute(0,3,1,2)',
         check=case_nhwc),
    dict(input='float labels', sees='error: labels must be integers', check=case_float_labels),
    dict(input='negative labels', sees='error: labels must be ≥ 0', check=case_negative_labels),
    dict(input='a label with no class name', sees='error: label 2 but only 2 class names',
         check=case_label_beyond_classes),
    dict(input='subset(-5)', sees='error: n must be None or a positive int ≤ len', check=case_subset_negative),
    dict(input='subset(n) with n > len', sees='error: n must be None or a positive int ≤ len',
         check=case_subset_too_many),
    dict(input='split(2.5)', sees='error: cannot hold out 2.5 of 10 images', check=case_split_float),
    dict(input='folder:PATH that does not exist', sees='error: data set folder PATH does not exist',
         check=case_missing_dataset_folder),
    dict(input="unreadable files with on_error='skip'", sees='one warning: skipped 3 unreadable or non-image '
         'file(s): the first few', check=case_skip_bad_files),
    dict(input='a CIFAR-10 batch pickle that runs code', sees='error: refusing to unpickle io.open: nothing in it '
         'was run', check=case_malicious_cifar_pickle),
    dict(input='a CIFAR-10 batch with label 12', sees='error: labels must be 0..9', check=case_cifar_bad_labels),
    dict(input='an animated GIF', sees='one warning: N animated image(s): only the first frame is used',
         check=case_animated_gif),
    dict(input="an image over PIL's pixel limit",
         sees="error: FILE: cannot decode image (DecompressionBombError…); it is larger than PIL's limit",
         check=case_decompression_bomb),
]

@pytest.mark.parametrize('case', CASES, ids=[c['input'] for c in CASES])
def test_case(case):
    assert set(case) == {'input', 'sees', 'check'} and case['input'] and case['sees']
    case['check']()
