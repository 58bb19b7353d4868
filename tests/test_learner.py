"The learner: exact resume from a checkpoint, checkpoint loading rules, backbone files."
import json
from pathlib import Path
import pytest, torch
from fastai.callback.core import Callback, CancelFitException
from ssl_learn.core import set_seed, get_tier
from ssl_learn.data import load_fmnist
from ssl_learn.learner import ssl_learner, load_checkpoint, train, bf16_supported
from ssl_learn.models import load_backbone, save_backbone, resnet18

@pytest.fixture(scope='module')
def small():
    return load_fmnist('train').subset(256, balanced=False)

class StopAfter(Callback):
    "Simulate an interruption right after epoch `n` has been checkpointed."
    order = 100
    def __init__(self, n): self.n = n
    def after_epoch(self):
        if self.epoch == self.n: raise CancelFitException()

def _learner(data, path):
    set_seed(0)
    return ssl_learner(data, 'rotation', 'test', path=path, bs=64, width=8, device='cpu')

def test_resume_gives_the_same_next_steps(small, tmp_path):
    # uninterrupted: 3 epochs
    a = _learner(small, tmp_path/'a'); a.fit_one_cycle(3, 0.05)
    # interrupted after epoch 1 (the 2nd), then a new learner in a changed RNG state resumes
    b = _learner(small, tmp_path/'b'); b.fit_one_cycle(3, 0.05, cbs=StopAfter(1))
    torch.rand(100)   # anything may happen in between
    c = _learner(small, tmp_path/'b')
    start = load_checkpoint(c, tmp_path/'b'/'last.pth')
    assert start == 2
    c.fit_one_cycle(3, 0.05, start_epoch=start)
    sa, sc = a.model.state_dict(), c.model.state_dict()
    assert sa.keys() == sc.keys()
    for k in sa: assert torch.equal(sa[k], sc[k]), k
    ha = json.loads((tmp_path/'a'/'log.json').read_text())['history']
    hc = json.loads((tmp_path/'b'/'log.json').read_text())['history']
    assert [h['epoch'] for h in hc] == [0, 1, 2]
    assert [h['train_loss'] for h in ha] == [h['train_loss'] for h in hc]
    # the resumed run finished all three epochs in its checkpoint
    st = torch.load(tmp_path/'b'/'last.pth', weights_only=True)
    assert st['epoch'] == 3

def test_checkpoint_loads_weights_only(small, tmp_path):
    a = _learner(small, tmp_path); a.fit_one_cycle(1, 0.05)
    st = torch.load(tmp_path/'last.pth', weights_only=True)   # raises if anything but tensors/containers is inside
    assert {'model', 'opt', 'epoch', 'rng', 'history'} <= set(st)

def test_load_checkpoint_rejects_other_files(small, tmp_path):
    a = _learner(small, tmp_path)
    p = tmp_path/'x.pth'; torch.save({'weights': torch.ones(1)}, p)
    with pytest.raises(ValueError, match='not a training checkpoint'): load_checkpoint(a, p)
    (tmp_path/'y.pth').write_text('hello')
    with pytest.raises(ValueError, match='cannot load'): load_checkpoint(a, tmp_path/'y.pth')

def test_backbone_file_errors(tmp_path):
    m = resnet18(in_chans=1, width=8)
    p = save_backbone(m, tmp_path/'bb.pth')
    with pytest.raises(ValueError, match='missing|shape'): load_backbone(p, arch=dict(depth=50, in_chans=1, width=8))
    with pytest.raises(ValueError, match='shape'): load_backbone(p, arch=dict(depth=18, in_chans=1, width=16))
    (tmp_path/'txt.pth').write_text('not a checkpoint')
    with pytest.raises(ValueError, match='not a loadable'): load_backbone(tmp_path/'txt.pth')
    with pytest.raises(FileNotFoundError): load_backbone(tmp_path/'none.pth')
    # a whole training state with module./backbone. prefixes loads the right weights
    torch.save({'model': {f'module.backbone.{k}': v for k, v in m.state_dict().items()}}, tmp_path/'full.pth')
    m2 = load_backbone(tmp_path/'full.pth', arch=m.config)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    # keys of some other network: fail loudly, never random weights
    torch.save({'state_dict': {'fc.weight': torch.zeros(2, 2)}, 'arch': m.config}, tmp_path/'other.pth')
    with pytest.raises(ValueError, match='missing'): load_backbone(tmp_path/'other.pth')

def test_bad_tier_values():
    with pytest.raises(ValueError, match='bs'): get_tier('test', bs=-1)
    with pytest.raises(ValueError, match='Unknown tier setting'): get_tier('test', batchsize=3)

def test_too_few_images_for_a_batch(small):
    with pytest.raises(ValueError, match='fewer than one batch'): ssl_learner(small.subset(10), 'rotation', 'test', bs=64, device='cpu')

def test_unknown_method(small):
    with pytest.raises(ValueError, match='available: .*rotation'): ssl_learner(small, 'rotnet', 'test', device='cpu')

def test_python_api_as_in_the_readme(tmp_path):
    "The README's script: a data source, a Learner for a method, fit, save the backbone, evaluate."
    from ssl_learn.data import load_fmnist
    from ssl_learn.eval.knn import knn_eval
    train_, test_ = load_fmnist('train'), load_fmnist('test')
    learn = ssl_learner(train_.subset(512), 'rotation', tier='test')
    learn.fit_one_cycle(1)
    save_backbone(learn.model.backbone, tmp_path/'rot.pth')
    rows = knn_eval(load_backbone(tmp_path/'rot.pth'), train_.subset(500), test_.subset(200))
    assert [r['k'] for r in rows] == [10, 20, 100, 200] and all(r['value'] > 20 for r in rows)

@pytest.mark.parametrize('method,layout', [('moco_v2', 'nhwc'), ('densecl', 'nhwc'), ('simclr', 'nhwc'),
                                           ('rotation', 'nhwc')])
def test_cpu_memory_layout_follows_the_method(small, method, layout):
    # on the CPU every method trains channels-last, the shuffle-BN ones too since their grouped BN needs no copies
    # there (a model may still opt out: SSLModel.cpu_channels_last, tested in nbs/11_method).
    # One-channel views look the same in both layouts, so the check is on a weight and on the activations it meets.
    set_seed(0)
    learn = ssl_learner(small, method, 'test', bs=64, width=8, device='cpu')
    conv = next(m for m in learn.model.modules()   # a weight whose two layouts differ: several inputs, a 3x3 kernel
                if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1 and m.weight.shape[-1] > 1)
    nhwc = lambda t: t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    assert ('nhwc' if nhwc(conv.weight) else 'nchw') == layout
    seen = set()
    h = conv.register_forward_hook(lambda m, i, o: seen.add('nhwc' if nhwc(i[0]) else 'nchw'))
    learn.fit(1); h.remove()
    assert seen == {layout}


@pytest.mark.skipif(not bf16_supported(), reason='this CPU has no bfloat16 arithmetic')
def test_bf16_run_records_its_precision_and_refuses_an_fp32_resume(tmp_path):
    # the precision is part of the run's configuration: a float32 call cannot silently continue a bfloat16 run
    s = train('rotation', 'fmnist', 'test', tmp_path/'r', epochs=1, width=8, monitor=False, precision='bf16',
              device='cpu')
    assert s['config']['precision'] == 'bf16'
    assert torch.isfinite(torch.tensor([h['train_loss'] for h in s['history']])).all()
    (tmp_path/'r'/'train.json').unlink()   # as if interrupted before the summary
    with pytest.raises(ValueError, match="precision 'bf16' → 'fp32'.*--precision bf16"):   # the way out, named
        train('rotation', 'fmnist', 'test', tmp_path/'r', epochs=1, width=8, monitor=False, device='cpu')


def test_the_summary_records_the_monitor_precision(tmp_path):
    # the kNN monitor runs in bf16 on a CPU with bf16 hardware: curves from machines that differ say so
    s = train('rotation', 'fmnist', 'test', tmp_path/'r', epochs=1, width=8, device='cpu')
    assert s['monitor_precision'] == ('bf16' if bf16_supported() else 'fp32')
    assert train('rotation', 'fmnist', 'test', tmp_path/'n', epochs=1, width=8, monitor=False,
                 device='cpu')['monitor_precision'] is None
