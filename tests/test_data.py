"Data sources and their errors on bad input: each test builds the small files it needs."
import gzip, pickle, warnings
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from ssl_learn.data import (load_image_folder, load_fmnist, read_idx, load_cifar10, load_stl10, get_data, ImageData,
                            TensorDL, ssl_dls)

def _img(path, shape=(12, 12, 3), seed=0):
    a = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    Image.fromarray(a).save(path); return a

@pytest.fixture
def folder(tmp_path):
    for c in ('a', 'b'):
        (tmp_path/c).mkdir()
        for i in range(3): _img(tmp_path/c/f'{i}.png', seed=i)
    return tmp_path

def test_labeled_folder(folder):
    d = load_image_folder(folder)
    assert d.x.shape == (6, 3, 12, 12) and d.x.dtype == torch.uint8
    assert d.classes == ['a', 'b'] and d.y.tolist() == [0, 0, 0, 1, 1, 1]

def test_pixels_are_kept(tmp_path):
    a = _img(tmp_path/'x.png', (8, 8, 3))
    d = load_image_folder(tmp_path, labeled=False)
    assert d.y is None and torch.equal(d.x[0], torch.from_numpy(a).permute(2, 0, 1))

def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'): load_image_folder(tmp_path/'nope')

def test_empty_folder(tmp_path):
    with pytest.raises(ValueError, match='no images') as e: load_image_folder(tmp_path)
    assert str(tmp_path) in str(e.value)

def test_corrupt_image_names_the_file(folder):
    (folder/'a'/'bad.jpg').write_bytes(b'\xff\xd8\xff\xe0 definitely not a jpeg')
    with pytest.raises(ValueError, match='bad.jpg'): load_image_folder(folder)

def test_truncated_image_names_the_file(folder):
    p = folder/'b'/'trunc.png'; _img(p, (40, 40, 3)); raw = p.read_bytes(); p.write_bytes(raw[:len(raw)//2])
    with pytest.raises(ValueError, match='trunc.png'): load_image_folder(folder)

def test_non_image_file(folder):
    (folder/'a'/'notes.txt').write_text('hello')
    with pytest.raises(ValueError, match='notes.txt.*not an image'): load_image_folder(folder)
    with pytest.warns(UserWarning, match='notes.txt'): d = load_image_folder(folder, on_error='skip')
    assert len(d) == 6

def test_mixed_grey_and_colour_are_converted(folder):
    Image.fromarray(np.full((12, 12), 77, np.uint8)).save(folder/'a'/'grey.png')
    d = load_image_folder(folder)
    assert d.x.shape == (7, 3, 12, 12)
    g = d.x[3]   # a/grey.png sorts after 0,1,2
    assert (g == 77).all()

def test_all_grey_stays_one_channel(tmp_path):
    for i in range(2): Image.fromarray(np.full((9, 9), i * 50, np.uint8)).save(tmp_path/f'{i}.png')
    assert load_image_folder(tmp_path).x.shape == (2, 1, 9, 9)

def test_different_sizes_are_resized(tmp_path):
    _img(tmp_path/'0.png', (10, 14, 3)); _img(tmp_path/'1.png', (20, 20, 3))
    with pytest.warns(UserWarning, match='different sizes'): d = load_image_folder(tmp_path)
    assert d.x.shape[2] == d.x.shape[3]
    assert load_image_folder(tmp_path, size=8).x.shape == (2, 3, 8, 8)

def test_fmnist_missing_path_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing'): load_fmnist('train', path=tmp_path)

def test_fmnist_no_data_no_network_is_clear(tmp_path, monkeypatch):
    import ssl_learn.data as D
    monkeypatch.setattr(D, 'DEBIAN_FMNIST', tmp_path/'none'); monkeypatch.setenv('SSL_LEARN_DATA', str(tmp_path/'home'))
    def boom(*a, **k): raise OSError('network unreachable')
    monkeypatch.setattr(D.urllib.request, 'urlretrieve', boom)
    with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion-mnist'): load_fmnist('train')

def test_fmnist_bad_split():
    with pytest.raises(ValueError, match='split'): load_fmnist('validation')

def _idx(path, arr):
    hdr = bytes([0, 0, 8, arr.ndim]) + b''.join(int(s).to_bytes(4, 'big') for s in arr.shape)
    with gzip.open(path, 'wb') as f: f.write(hdr + arr.tobytes())

def test_fmnist_from_own_files(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (5, 28, 28), dtype=np.uint8); y = np.arange(5, dtype=np.uint8)
    for s, (xi, yi) in {'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
                        'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')}.items():
        _idx(tmp_path/xi, x); _idx(tmp_path/yi, y)
    d = load_fmnist('test', path=tmp_path)
    assert torch.equal(d.x[:, 0], torch.from_numpy(x)) and d.y.tolist() == list(range(5))

def test_truncated_idx(tmp_path):
    _idx(tmp_path/'a.gz', np.zeros((4, 3, 3), np.uint8))
    raw = gzip.open(tmp_path/'a.gz').read()
    with gzip.open(tmp_path/'b.gz', 'wb') as f: f.write(raw[:-5])
    with pytest.raises(ValueError, match='truncated'): read_idx(tmp_path/'b.gz')
    (tmp_path/'c.gz').write_bytes(b'garbage')
    with pytest.raises(ValueError, match='c.gz'): read_idx(tmp_path/'c.gz')

def test_cifar10_from_own_files(tmp_path):
    d = tmp_path/'cifar-10-batches-py'; d.mkdir()
    rng = np.random.default_rng(0)
    for n in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        with open(d/n, 'wb') as f: pickle.dump({'data': rng.integers(0, 255, (4, 3072), dtype=np.uint8), 'labels': [0, 1, 2, 3]}, f)
    tr = load_cifar10('train', tmp_path); te = load_cifar10('test', tmp_path)
    assert tr.x.shape == (20, 3, 32, 32) and te.x.shape == (4, 3, 32, 32) and tr.n_classes == 10
    (d/'test_batch').write_bytes(b'nope')
    with pytest.raises(ValueError, match='test_batch'): load_cifar10('test', tmp_path)
    with pytest.raises(FileNotFoundError, match='download=True'): load_cifar10('train', tmp_path/'elsewhere')

def test_stl10_from_own_files(tmp_path):
    d = tmp_path/'stl10_binary'; d.mkdir()
    x = np.random.default_rng(0).integers(0, 255, (3, 3, 96, 96), dtype=np.uint8)
    x.transpose(0, 1, 3, 2).copy().tofile(d/'train_X.bin'); np.array([1, 2, 10], np.uint8).tofile(d/'train_y.bin')
    s = load_stl10('train', tmp_path)
    assert torch.equal(s.x, torch.from_numpy(x)) and s.y.tolist() == [0, 1, 9]
    x[:1].tofile(d/'unlabeled_X.bin')
    assert load_stl10('unlabeled', tmp_path).y is None
    (d/'test_X.bin').write_bytes(b'123'); np.array([1], np.uint8).tofile(d/'test_y.bin')
    with pytest.raises(ValueError, match='test_X.bin'): load_stl10('test', tmp_path)

def test_named_folder_dataset(folder, tmp_path_factory):
    root = tmp_path_factory.mktemp('ds')
    import shutil
    shutil.copytree(folder, root/'train'); shutil.copytree(folder, root/'val')
    tr, te = get_data(f'folder:{root}')
    assert len(tr) == len(te) == 6
    with pytest.raises(FileNotFoundError, match='train/'): get_data(f'folder:{folder}')
    with pytest.raises(ValueError, match='Unknown dataset'): get_data('imagenet22k')

def test_imagedata_validation():
    with pytest.raises(ValueError, match='uint8'): ImageData(torch.zeros(2, 1, 3, 3))
    with pytest.raises(ValueError, match='labels'): ImageData(torch.zeros(2, 1, 3, 3, dtype=torch.uint8), torch.zeros(3))
    with pytest.raises(ValueError, match='no images'): ImageData(torch.zeros(0, 1, 3, 3, dtype=torch.uint8))

def test_tensor_dl_covers_every_image_once():
    x = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)
    dl = TensorDL(x, None, bs=16, shuffle=True, drop_last=False)
    seen = torch.cat([b[0].flatten() for b in dl])
    assert sorted(seen.tolist()) == list(range(100))
    with pytest.raises(ValueError, match='batch size'): TensorDL(x[:3], None, bs=16, drop_last=True)
