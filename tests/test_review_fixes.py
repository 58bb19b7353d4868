"""Defects found in review of the layout and robustness changes, each with the test that failed before its fix."""
import json, time, warnings
import pytest, torch
from fastai.callback.core import Callback
from ssl_learn.bench.run import bench
from ssl_learn.learner import train, DivergenceGuard, TrainingDiverged

def test_bench_with_a_forced_size_is_done_the_second_time(tmp_path):
    kw = dict(out=tmp_path/'res', runs=tmp_path/'runs', baselines=())
    bench('test', 'rotation', 'knn', **kw)                   # a run at the tier's own size, in the same folders
    kw['size'] = 24
    bench('test', 'rotation', 'knn', **kw)
    log = bench('test', 'rotation', 'knn', **kw)
    assert log['results']['rotation'].get('status') == 'done before', log['results']

def test_a_finished_run_is_not_rewritten(tmp_path):
    s = train('rotation', 'fmnist', tier='test', out=tmp_path, epochs=1)
    before = (tmp_path/'train.json').read_text(); t = (tmp_path/'backbone.pth').stat().st_mtime_ns
    time.sleep(0.05)
    s2 = train('rotation', 'fmnist', tier='test', out=tmp_path, epochs=1)
    assert (tmp_path/'train.json').read_text() == before and (tmp_path/'backbone.pth').stat().st_mtime_ns == t
    assert s2['seconds'] == s['seconds'] > 0
    assert s['seconds'] >= sum(h['seconds_train'] for h in s['history'])      # every epoch's wall time, monitor included

def test_demo_of_a_vit_method_compares_with_a_random_vit(tmp_path):
    from ssl_learn.cli import demo
    res = demo('test', tmp_path, 'mae', epochs=1)         # its report names a ViT (it crashed on the ViT config)
    assert res['arch'].get('arch') == 'vit' and res['random_arch'].get('arch') == 'vit'

def test_old_names_warn_once():
    import importlib, ssl_learn.eval as E
    importlib.reload(E)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        from ssl_learn.eval import knn_eval  # noqa: F401
    assert sum(issubclass(x.category, DeprecationWarning) for x in w) == 1

class _Learn:
    "The few attributes DivergenceGuard reads, with or without mixed precision."
    def __init__(self, amp):
        self.training, self.loss, self.opt, self.epoch, self.n_epoch, self.iter, self.n_iter = True, None, None, 0, 1, 0, 4
        if amp: self.mixed_precision = object()

@pytest.mark.parametrize('amp', [False, True])
def test_one_overflowing_batch_under_mixed_precision_is_not_a_divergence(amp):
    g = DivergenceGuard(); g.learn = _Learn(amp); g.before_fit()
    g.learn.loss = torch.tensor(float('inf'))
    if not amp:
        with pytest.raises(TrainingDiverged): g.after_loss()
        return
    g.after_loss()                                     # the grad scaler skips this step: training goes on
    g.learn.loss = torch.tensor(1.0); g.after_loss()
    g.learn.loss = torch.tensor(float('nan'))
    with pytest.raises(TrainingDiverged):
        for _ in range(g.patience): g.after_loss()    # a run of them is a divergence

def test_supervised_views_follow_their_training_argument():
    "SupervisedCallback.make_views read the learner's flag instead of its `training` argument (found by test_gpu_readiness)."
    from ssl_learn.data import load_fmnist
    from ssl_learn.learner import ssl_learner
    trn = load_fmnist('train').subset(256)
    learn = ssl_learner(trn, 'supervised', 'test', bs=64)
    cb = learn.supervised; learn.training = False           # outside a fit
    (xb,), (yb,) = cb.make_views(trn.x[:8], torch.arange(8), True)
    assert torch.equal(yb, trn.y[:8])                       # the labels of those images, not their indices
