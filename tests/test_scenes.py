"""FMNIST-Scenes on disk: bad VOC/COCO input gets an error naming the file (issue 18)."""
import json
import pytest, torch
from ssl_learn.data import ImageData
from ssl_learn.scenes import make_scenes, export_voc, export_coco, read_voc, read_coco

@pytest.fixture(scope='module')
def trees(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(40, 1, 28, 28, dtype=torch.uint8); x[:, :, 6:22, 8:20] = torch.randint(60, 255, (40, 1, 16, 12), generator=g)
    items = ImageData(x, torch.arange(40) % 10, name='toy')
    sc = make_scenes(items, 6, canvas=64, n_obj=(1, 3), scale=(0.75, 1.5), seed=0)
    root = tmp_path_factory.mktemp('scenes')
    export_voc(sc, root, 'train'); export_coco(sc, root/'coco', 'train')
    return sc, root

def test_roundtrip(trees):
    sc, root = trees
    v, c = read_voc(root, 'train'), read_coco(root/'coco', 'train')
    assert all(torch.equal(a['boxes'], b['boxes']) and torch.equal(a['masks'], d['masks'])
               for a, b, d in zip(sc.targets, v.targets, c.targets))

def test_voc_root_without_files(tmp_path):
    with pytest.raises(ValueError, match='expected a VOCdevkit tree'): read_voc(tmp_path, 'train')
    (tmp_path/'VOCdevkit'/'VOC2007').mkdir(parents=True)
    with pytest.raises(ValueError, match=r'ImageSets/Main/train\.txt'): read_voc(tmp_path, 'train')

def test_coco_root_without_files(tmp_path):
    with pytest.raises(ValueError, match=r'annotations/instances_train\.json'): read_coco(tmp_path, 'train')

def test_voc_empty_list(trees, tmp_path):
    _, root = trees
    lst = root/'VOCdevkit/VOC2007/ImageSets/Main/train.txt'; good = lst.read_text()
    try:
        lst.write_text('')
        with pytest.raises(ValueError, match=r'train\.txt: the image list is empty'): read_voc(root, 'train')
    finally: lst.write_text(good)

def test_coco_empty_list_unknown_class_box_and_mask_size(trees):
    _, root = trees
    f = root/'coco/annotations/instances_train.json'; good = f.read_text(); d = json.loads(good)
    def bad(change, match):
        dd = json.loads(good); change(dd); f.write_text(json.dumps(dd))
        with pytest.raises(ValueError, match=match): read_coco(root/'coco', 'train')
    try:
        bad(lambda dd: dd.update(images=[], annotations=[]), r'instances_train\.json: no images')
        bad(lambda dd: dd['categories'][0].update(name='hat'), r"instances_train\.json: unknown class.*'hat'")
        bad(lambda dd: dd['annotations'][0].update(bbox=[50, 50, 30, 30]), r'instances_train\.json \(annotation 1\).*outside')
        def small(dd):
            a = dd['annotations'][0]; a['segmentation'] = dict(size=[32, 32], counts='0')
        bad(small, r'instances_train\.json: annotation 1 has a mask of size \[32, 32\]')
        assert d['annotations']
    finally: f.write_text(good)

def test_voc_mask_of_wrong_size(trees):
    _, root = trees
    from PIL import Image
    p = root/'VOCdevkit/VOC2007/SegmentationClass/train000001.png'; good = p.read_bytes()
    try:
        Image.new('P', (32, 32)).save(p)
        with pytest.raises(ValueError, match=r'train000001\.png: mask of size \(32, 32\)'): read_voc(root, 'train')
    finally: p.write_bytes(good)

def test_scenes_need_labeled_items():
    with pytest.raises(ValueError, match='labeled 1-channel'):
        make_scenes(ImageData(torch.zeros(4, 1, 28, 28, dtype=torch.uint8)), 2)
