"Review fixes: DeepCluster's head optimiser state and momentum, the MoCo v2 crop scale, SimSiam's fixed predictor lr, DenseCL's pooled dense key."
import pytest, torch, torch.nn.functional as F
from fastai.callback.core import Callback, CancelFitException
from ssl_learn.core import set_seed
from ssl_learn.method import get_method
from ssl_learn.data import load_fmnist
from ssl_learn.augment import view_preset, RandomResizedCrop
from ssl_learn.models import resnet18
from ssl_learn.learner import ssl_learner
from ssl_learn.methods.densecl import DenseCL

@pytest.fixture(scope='module')
def imgs():
    return load_fmnist('train').subset(256, seed=0, balanced=False)

class _Record(Callback):
    "Call `f(learn)` after every optimizer step; stop the fit after `n` steps."
    order = 100
    def __init__(self, f, n=2): self.f, self.n, self.seen = f, n, []
    def after_step(self): self.seen.append(self.f(self.learn))
    def after_batch(self):
        if self.iter + 1 >= self.n: raise CancelFitException()

def _group_of(opt, p):
    "Index of the optimizer parameter group holding `p`."
    return next(i for i, ps in enumerate(opt.param_lists) if any(q is p for q in ps))

# ---------------------------------------------------------------- 1. DeepCluster
def test_deepcluster_head_keeps_do_wd_and_momentum_zero(imgs):
    set_seed(0)
    learn = ssl_learner(imgs, 'deepcluster', 'test', bs=64, width=8, device='cpu')
    head, bb = learn.model.head, learn.model.backbone
    def snap(learn):
        o = learn.opt
        return dict(do_wd=o.state[head.bias].get('do_wd', True), head_mom=o.hypers[_group_of(o, head.weight)]['mom'],
                    bb_mom=o.hypers[_group_of(o, bb.conv1.weight)]['mom'])
    rec = _Record(snap, n=3)
    learn.fit_one_cycle(2, 0.05, cbs=rec)        # before_train re-clusters (and re-initialises the head) first
    assert rec.seen, 'no optimizer step recorded'
    for s in rec.seen:
        assert s['do_wd'] is False, s            # fastai's no-weight-decay flag on the bias survived the reset
        assert s['head_mom'] == 0, s             # the head at momentum 0, as MMSelfSup's `\Ahead.` paramwise option
        assert s['bb_mom'] > 0.8, s              # the backbone keeps the (one-cycle) momentum

# ---------------------------------------------------------------- 2. crop scale of the MoCo v2 pipeline
def _crop_scale(views):
    return next(t for t in views if isinstance(t, RandomResizedCrop)).scale

@pytest.mark.parametrize('size', [28, 96, 224])
def test_mocov2_preset_crop_scale_is_0_2(size):
    assert _crop_scale(view_preset('mocov2', size))[0] == 0.2

@pytest.mark.parametrize('method', ['moco_v2', 'simsiam', 'densecl'])
@pytest.mark.parametrize('size', [96, 224])
def test_mocov2_family_methods_crop_scale_is_0_2(method, size):
    _, cb = get_method(method)['builder'](backbone=resnet18(in_chans=3, width=8), size=size, data=None)
    assert _crop_scale(cb.views)[0] == 0.2

@pytest.mark.parametrize('name', ['basic', 'simclr', 'byol'])
def test_other_presets_keep_their_crop_scale(name):
    assert _crop_scale(view_preset(name, 28))[0] == 0.2 and _crop_scale(view_preset(name, 224))[0] == 0.08

# ---------------------------------------------------------------- 3. SimSiam's fixed predictor lr
def test_simsiam_predictor_lr_is_the_fit_peak_lr(imgs):
    set_seed(0)
    learn = ssl_learner(imgs, 'simsiam', 'test', bs=64, width=8, device='cpu')
    X = 0.02
    assert learn.lr != X
    rec = _Record(lambda l: [h['lr'] for h in l.opt.hypers], n=2)
    learn.fit_one_cycle(10, X, cbs=rec)          # stopped after 2 of 40 steps: still warming up
    for lrs in rec.seen:
        assert len(lrs) == 2 and lrs[1] == pytest.approx(X, rel=1e-9), lrs   # the predictor at the peak lr of this fit
        assert lrs[0] < X, lrs                                               # the rest on the schedule

# ---------------------------------------------------------------- 6. DenseCL's pooled dense key
def test_densecl_queue2_key_is_normalize_of_pooled_dense_grid(imgs):
    set_seed(0)
    x1 = view_preset('mocov2', 28)(imgs.x[:8]); x2 = view_preset('mocov2', 28)(imgs.x[:8])
    m = DenseCL(resnet18(in_chans=1, width=8), dim=16, queue_size=32)
    m.eval()                                      # no shuffle-BN, BN running stats: the key is reproducible below
    pred = m(x1, x2)
    m.train(); m.loss(pred)                      # training mode: the loss pushes k and k2
    with torch.no_grad():
        grid = m.dense_head_k.eval()(m.backbone_k.eval()(x2, stages=True)[m.dense_stage])   # N×dim×H×W, raw
    k2 = F.normalize(grid.flatten(2).mean(2), dim=1)          # MMSelfSup: pool the raw dense projection, then normalise
    assert torch.allclose(m.queue2.keys[:8], k2, atol=1e-5)
    wrong = F.normalize(F.normalize(grid.flatten(2), dim=1).mean(2), dim=1)   # normalise per location, then pool
    assert not torch.allclose(wrong, k2, atol=1e-3)           # the two orders differ on these features
