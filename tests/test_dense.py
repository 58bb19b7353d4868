"""Dense transfer (issue 18): one step of each protocol on tiny VOC and COCO trees written by the test, the export's
key mapping, and the refusals (a backbone that cannot take a head)."""
import pickle
import numpy as np, pytest, torch
from torch import nn
from ssl_learn.data import ImageData
from ssl_learn.models import resnet18
from ssl_learn.vit import vit_tiny
from ssl_learn.scenes import make_scenes, export_voc, export_coco, read_voc, read_coco
from ssl_learn.eval.seg import seg_eval, FCN, confusion, miou
from ssl_learn.eval.det import det_eval, inst_eval, export_backbone, c4_faster_rcnn, voc_eval
from ssl_learn.eval.protocols import PROTOCOLS, PROTOCOL_SETTINGS, check_settings

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "8 train and 4 test scenes of 64 px from toy items, written as VOC and COCO trees and read back."
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(40, 1, 28, 28, dtype=torch.uint8); x[:, :, 5:23, 7:21] = torch.randint(80, 255, (40, 1, 18, 14), generator=g)
    items = ImageData(x, torch.arange(40) % 10, name='toy')
    root = tmp_path_factory.mktemp('dense')
    for split, n, seed in (('train', 8, 0), ('test', 4, 1)):
        sc = make_scenes(items, n, canvas=64, n_obj=(1, 3), scale=(0.75, 1.5), seed=seed)
        export_voc(sc, root, split); export_coco(sc, root/'coco', split)
    return dict(voc=(read_voc(root, 'train'), read_voc(root, 'test')),
                coco=(read_coco(root/'coco', 'train'), read_coco(root/'coco', 'test')))

BB = dict(in_chans=1, width=8, stem='small')
ONE = dict(epochs=1, bs=4, lr=0.01, seeds=(0,))

def test_seg_one_step(tiny):
    rows = seg_eval(resnet18(**BB), *tiny['voc'], **ONE)
    assert rows[0]['metric'] == 'mIoU' and 0 <= rows[0]['value'] <= 100

def test_det_one_step(tiny):
    rows = det_eval(resnet18(**BB), *tiny['voc'], proposals=10, **ONE)
    assert [r['metric'] for r in rows] == ['AP50 (VOC07)', 'AP', 'AP75'] and all(0 <= r['value'] <= 100 for r in rows)

def test_inst_one_step(tiny):
    rows = inst_eval(resnet18(**BB), *tiny['coco'], proposals=10, channels=16, fc=32, mask_channels=16, **ONE)
    assert {r['metric'] for r in rows} >= {'mask AP', 'box AP50'}

def test_backbone_is_not_changed_by_fine_tuning(tiny):
    bb = resnet18(**BB); before = {k: v.clone() for k, v in bb.state_dict().items()}
    seg_eval(bb, *tiny['voc'], **ONE)
    assert all(torch.equal(before[k], v) for k, v in bb.state_dict().items())

@pytest.mark.parametrize('fn', [seg_eval, det_eval, inst_eval])
def test_a_backbone_without_stages_is_refused(tiny, fn):
    class Pooled(nn.Module):
        config = dict(in_chans=1)
        def forward(self, x): return x.flatten(1)
    with pytest.raises(ValueError, match='cannot take a'): fn(Pooled(), *tiny['voc'], **ONE)
    with pytest.raises(ValueError, match='n/a for ViT'): fn(vit_tiny(img_size=28), *tiny['voc'], **ONE)

def test_protocol_settings_are_valid():
    for tier in ('test', 'cpu', 'cpu_bench', 'gpu'):
        for p in ('det', 'inst', 'seg'): check_settings(p, PROTOCOL_SETTINGS[tier][p])
    with pytest.raises(ValueError, match='epochs'): check_settings('det', dict(epochs=0))

def test_three_channel_backbone_refused_on_grey_scenes():
    with pytest.raises(ValueError, match='grey'): PROTOCOLS['seg'](resnet18(in_chans=3, width=8), None, None, scenes='test')

def test_export_detectron2_pickle_roundtrip(tmp_path):
    bb = resnet18(**BB)
    export_backbone(bb, tmp_path/'d2.pkl', fmt='detectron2')
    d = pickle.loads((tmp_path/'d2.pkl').read_bytes())
    assert d['matching_heuristics'] and d['meta']['arch'] == bb.config
    m = d['model']
    assert np.array_equal(m['res3.0.shortcut.norm.running_mean'], bb.layer2[0].downsample[1].running_mean.numpy())
    assert np.array_equal(m['res4.1.conv2.weight'], bb.layer3[1].conv2.weight.detach().numpy())
    assert np.array_equal(m['stem.conv1.norm.bias'], bb.bn1.bias.detach().numpy())
    with pytest.raises(ValueError, match='fmt'): export_backbone(bb, fmt='keras')

def test_metrics_fail_when_wrong():
    "The metrics can fail: a shifted prediction loses IoU and AP."
    t = torch.zeros(2, 8, 8, dtype=torch.long); t[:, 2:6, 2:6] = 1
    assert miou(confusion(t, t, 2)) == 1 and miou(confusion(t.roll(2, -1), t, 2)) < 0.7
    T = [dict(boxes=torch.tensor([[0., 0, 10, 10]]), labels=torch.tensor([1]), difficult=torch.tensor([False]))]
    P = lambda b: [dict(boxes=torch.tensor([b]), labels=torch.tensor([1]), scores=torch.tensor([1.]))]
    assert voc_eval(P([0., 0, 10, 10]), T, 1)[0] == 1 and voc_eval(P([6., 6, 16, 16]), T, 1)[0] == 0


@pytest.mark.parametrize('protocol', ['det', 'inst'])
def test_detection_seeds_resume_from_the_store(tiny, tmp_path, monkeypatch, protocol):
    "Under seed_store a finished seed is taken back (nothing trained, same rows); other settings train again."
    import ssl_learn.eval.det as det
    from ssl_learn.eval.seg import seed_store
    fn, data, kw = ((det_eval, tiny['voc'], dict(proposals=10)) if protocol == 'det' else
                    (inst_eval, tiny['coco'], dict(proposals=10, channels=16, fc=32, mask_channels=16)))
    kw.update(ONE, seeds=(0, 1)); bb = resnet18(**BB)
    with seed_store(tmp_path): first = fn(bb, *data, **kw)
    assert sorted(f.name for f in tmp_path.iterdir()) == [f'{protocol}_seed0.json', f'{protocol}_seed1.json']
    def refuse(*a, **k): raise AssertionError('trained again')
    monkeypatch.setattr(det, 'train_detector', refuse)
    with seed_store(tmp_path): again = fn(bb, *data, **kw)
    fig = lambda rows: [(r['metric'], r['values'], r['seconds']) for r in rows]
    assert fig(again) == fig(first)
    with seed_store(tmp_path), pytest.raises(AssertionError, match='trained again'): fn(bb, *data, **dict(kw, lr=0.02))


def test_bench_eval_worker_keeps_dense_seeds(tmp_path):
    "The benchmark's evaluation process runs the dense protocols under a seed store beside its results."
    import json
    from ssl_learn.bench.run import eval_worker
    ev = tmp_path/'eval'; ev.mkdir()
    job = dict(name='random', spec='random', protocols=['seg'], tier='test', data='fmnist', ev=str(ev),
               settings='test', pretrain=None, command='test')
    eval_worker(job)
    f = ev/'.seeds/random/seg_seed0.json'
    assert (ev/'random_seg.json').exists() and f.exists()
    d = json.loads(f.read_text()); d['result']['iou'] = 0.123456; f.write_text(json.dumps(d))   # mark the stored seed
    value = lambda: json.loads((ev/'random_seg.json').read_text())['rows'][0]['value']
    eval_worker(job); assert value() == pytest.approx(12.3456)                  # taken back
    eval_worker(dict(job, force=True)); assert value() != pytest.approx(12.3456)  # --force: trained again


def test_precision_is_checked_and_recorded(tiny, monkeypatch):
    "bf16 runs where the CPU has it, and the rows say so; elsewhere fp32 with a warning; a typo raises."
    import ssl_learn.eval.seg as seg
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16'"):
        seg_eval(resnet18(**BB), *tiny['voc'], precision='fp16', **ONE)
    assert seg_eval(resnet18(**BB), *tiny['voc'], **ONE)[0]['precision'] == 'fp32'
    monkeypatch.setattr(seg, 'bf16_supported', lambda: False)
    with pytest.warns(UserWarning, match='running in fp32'):
        rows = det_eval(resnet18(**BB), *tiny['voc'], proposals=10, precision='bf16', **ONE)
    assert {r['precision'] for r in rows} == {'fp32'}


@pytest.mark.skipif(not __import__('ssl_learn.learner', fromlist=['x']).bf16_supported(), reason='no bf16 CPU')
def test_bf16_detector_keeps_boxes_and_losses_in_float32(tiny):
    "Only the convolutions autocast: losses, proposals and predicted boxes stay float32, and the rows say bf16."
    from ssl_learn.eval.det import autocast_detector, _det_batch
    m = autocast_detector(c4_faster_rcnn(resnet18(**BB), 10, 64), 'bf16').train()
    xs, ts = _det_batch(tiny['voc'][0], torch.arange(2))
    assert all(v.dtype == torch.float32 for v in m(xs, ts).values())
    out = m.eval()(xs)
    assert all(o['boxes'].dtype == torch.float32 and o['scores'].dtype == torch.float32 for o in out)
    rows = inst_eval(resnet18(**BB), *tiny['coco'], proposals=10, channels=16, fc=32, mask_channels=16,
                     precision='bf16', **ONE)
    assert {r['precision'] for r in rows} == {'bf16'}


def test_dense_protocol_trains_on_the_first_n_train_scenes():
    "n_train takes the first training scenes (the cpu setting's low-data regime); more than there are is refused."
    import ssl_learn.eval.protocols as P
    seen = {}
    def fake(backbone, train, test, **kw): seen['n'] = len(train); return []
    run = P._dense('seg', fake, 'voc')
    run(resnet18(**BB), None, None, scenes='test', n_train=5); assert seen['n'] == 5
    run(resnet18(**BB), None, None, scenes='test'); assert seen['n'] == 48
    with pytest.raises(ValueError, match='n_train=49, but'): run(resnet18(**BB), None, None, scenes='test', n_train=49)
    assert P.PROTOCOL_SETTINGS['cpu']['det']['n_train'] == P.DENSE_TRAIN_SCENES['cpu']


def test_threshold_baseline_is_a_dense_only_baseline():
    "'threshold' (the non-learned detector) evaluates like any baseline on the dense protocols and refuses the others."
    from ssl_learn.eval.protocols import evaluate
    rows = evaluate('threshold', 'det,seg', tier='test')
    assert {r['protocol'] for r in rows} == {'det', 'seg'} and all(r['setting'] == 'threshold+CC+kNN' for r in rows)
    assert all(0 <= r['value'] <= 100 for r in rows) and {r['backbone'] for r in rows} == {'threshold'}
    with pytest.raises(ValueError, match='only detects and segments'): evaluate('threshold', 'knn', tier='test')
    # the kNN bank is Fashion-MNIST's 28² items whatever size the classification split was resized to
    assert evaluate('threshold', 'seg', tier='test', size=32)[0]['value'] >= 0
