"BYOL, SimSiam, SwAV, DenseCL: losses against hand-computed values, Sinkhorn marginals, the EMA schedule, dense matching, losses falling on real images."
import math
import pytest, torch, torch.nn.functional as F
from ssl_learn.core import set_seed
from ssl_learn.data import load_fmnist
from ssl_learn.augment import view_preset
from ssl_learn.models import resnet18
from ssl_learn.losses import normalized_mse, neg_cosine, sinkhorn, swapped_prediction, info_nce
from ssl_learn.momentum import cosine_momentum
from ssl_learn.learner import ssl_learner
from ssl_learn.methods.byol import BYOL, byol_views
from ssl_learn.methods.simsiam import SimSiam
from ssl_learn.methods.swav import SwAV, MultiCropViews
from ssl_learn.methods.densecl import DenseCL, dense_match

@pytest.fixture(scope='module')
def imgs():
    return load_fmnist('train').subset(256, seed=0, balanced=False)

# ---------------------------------------------------------------- losses by hand
def test_byol_loss_by_hand():
    # one image, two views: p1 = (1, 0), p2 = (0, 1); targets t1 = (1, 1), t2 = (1, 0)
    p = torch.tensor([[1., 0.], [0., 1.]]); t = torch.tensor([[1., 1.], [1., 0.]])
    m = BYOL.__new__(BYOL)                                    # the loss needs no weights
    # p1 vs t2: cos 1 → 0; p2 vs t1: cos 1/√2 → 2 − √2; BYOL sums the two directions
    assert abs(BYOL.loss(m, (p, None, t)).item() - (2 - 2**0.5)) < 1e-6
    assert abs(normalized_mse(p, t.roll(1, 0)).item() - (2 - 2**0.5) / 2) < 1e-6

def test_simsiam_loss_by_hand():
    p = torch.tensor([[1., 0.], [0., 1.]]); z = torch.tensor([[3., 4.], [1., 0.]])
    m = SimSiam.__new__(SimSiam); m.stop_grad = True
    # p1 vs z2: cos((1,0),(1,0)) = 1; p2 vs z1: cos((0,1),(3,4)) = 0.8; loss = −(1 + 0.8)/2
    assert abs(SimSiam.loss(m, (p, z)).item() + 0.9) < 1e-6
    assert abs(neg_cosine(p, z.roll(1, 0)).item() + 0.9) < 1e-6

def test_swapped_prediction_by_hand():
    s = [torch.tensor([[0., 0.]]), torch.tensor([[1., 0.]])]
    q = [torch.tensor([[1., 0.]]), torch.tensor([[.5, .5]])]
    # −log(e/(e+1)) = 0.31326 and log 2 = 0.69315, averaged
    assert abs(swapped_prediction(s, q, T=1.).item() - (0.31326 + 0.69315) / 2) < 1e-5
    # T divides the scores: T = 0.5 doubles them → −log(e²/(e²+1))
    assert abs(swapped_prediction(s, q[:1], T=.5).item() - math.log1p(math.exp(-2))) < 1e-6
    with pytest.raises(ValueError, match='B×K'): swapped_prediction([torch.zeros(2, 3), torch.zeros(2, 4)], [torch.zeros(2, 3)])

def test_dense_infonce_by_hand():
    # DenseCL's dense term on 1 image, 2 locations, 2-d features, one queue entry, T = 1
    m = DenseCL(resnet18(in_chans=1, width=8), dim=2, queue_size=1, T=1.)
    m.queue.keys.copy_(torch.tensor([[0., 1.]])); m.queue2.keys.copy_(torch.tensor([[0., 1.]]))
    q_grid = torch.tensor([[[1., 0.], [0., 1.]]])             # N×dim×S: location 0 = (1,0), location 1 = (0,1)
    k_grid = torch.tensor([[[0., 1.], [1., 0.]]])             # key location 0 = (0,1), location 1 = (1,0)
    q_b = torch.tensor([[[1., 0.], [0., 1.]]]); k_b = torch.tensor([[[0., 1.], [1., 0.]]])   # backbone: 0↔1, 1↔0
    g = torch.tensor([[1., 0.]])
    lg, ld = m.loss_terms(((g, q_grid, q_b), (g, k_grid, k_b)))
    # matches swap the locations, so both positives have cosine 1; the queue entry (0,1) gives 0 and 1:
    # location 0: log(1 + e^{0−1}) = 0.31326; location 1: log(1 + e^{1−1}) = log 2
    assert abs(ld.item() - (0.31326 + 0.69315) / 2) < 1e-5
    assert abs(lg.item() - 0.31326) < 1e-5                   # global: positive 1, negative 0
    assert abs(info_nce(g, g, torch.tensor([[0., 1.]]), T=1.).item() - 0.31326) < 1e-5

# ---------------------------------------------------------------- Sinkhorn
@pytest.mark.parametrize('B,K', [(64, 16), (32, 50), (7, 3)])
def test_sinkhorn_marginals(B, K):
    s = F.normalize(torch.randn(B, 8), dim=1) @ F.normalize(torch.randn(K, 8), dim=1).t()
    q = sinkhorn(s, eps=0.05, n_iters=200)
    assert (q >= 0).all()
    assert torch.allclose(q.sum(1), torch.ones(B), atol=1e-5)                 # each sample: total mass 1
    assert torch.allclose(q.sum(0), torch.full((K,), B / K), atol=1e-3 * B / K + 1e-4)   # each prototype: B/K
    q3 = sinkhorn(s, n_iters=3)
    assert torch.allclose(q3.sum(1), torch.ones(B), atol=1e-5)               # rows exact after any number of steps

def test_sinkhorn_equipartition_overrides_preference():
    q = sinkhorn(torch.tensor([[1., 0.], [1., 0.], [1., 0.], [1., 0.]]), eps=1., n_iters=10)
    assert torch.allclose(q, torch.full((4, 2), 0.5), atol=1e-5)
    with pytest.raises(ValueError, match='eps'): sinkhorn(torch.zeros(2, 2), eps=0)

# ---------------------------------------------------------------- EMA schedule
def test_cosine_momentum_values():
    # MMSelfSup's hook test: base 0.96, iteration k=1 of K=2 → 0.98
    assert abs(cosine_momentum(0.96, 1 / 2) - 0.98) < 1e-12
    assert cosine_momentum(0.99, 0.) == 0.99 and cosine_momentum(0.99, 1.) == 1.
    assert abs(cosine_momentum(0.99, 0.25) - (1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)) < 1e-12
    vals = [cosine_momentum(0.99, p / 10) for p in range(11)]
    assert all(a < b for a, b in zip(vals, vals[1:]))

def test_byol_ema_step_follows_the_schedule():
    m = BYOL(resnet18(in_chans=1, width=8), 32, 16, 32, base_momentum=0.96)
    with torch.no_grad():
        for p in m.target_backbone.parameters(): p.zero_()
        for p in m.backbone.parameters(): p.fill_(1.)
    m.on_step(0.5)                                          # m = 0.98 → target = 0.02·online
    assert abs(m.momentum - 0.98) < 1e-12
    assert torch.allclose(m.target_backbone.conv1.weight, torch.full_like(m.target_backbone.conv1.weight, 0.02))
    assert not hasattr(m, 'after_step')     # a fastai event name on the model would also be reached by every other callback

def test_byol_in_a_learner_updates_once_per_step(imgs):
    set_seed(0)
    learn = ssl_learner(imgs.subset(128, seed=0, balanced=False), 'byol', 'test', bs=64, width=8, device='cpu')
    learn.fit(1, 0.01)                                          # 2 steps: last progress 1/2
    assert abs(learn.model.momentum - cosine_momentum(0.99, 0.5)) < 1e-9
    t, o = learn.model.target_backbone.conv1.weight, learn.model.backbone.conv1.weight
    assert not torch.equal(t, o)

# ---------------------------------------------------------------- dense matching
@pytest.mark.parametrize('shift', [(0, 1), (1, 2), (3, 3)])
def test_dense_match_known_shift(shift):
    f = torch.randn(3, 16, 4, 4)
    g = f.roll(shift, dims=(2, 3))
    m = dense_match(f, g)
    ys, xs = torch.meshgrid(torch.arange(4), torch.arange(4), indexing='ij')
    exp = (((ys + shift[0]) % 4) * 4 + (xs + shift[1]) % 4).flatten()
    assert (m == exp).all()
    # flattened N×C×S input gives the same; scale of the features does not matter (cosine)
    assert (dense_match(f.flatten(2), 5 * g.flatten(2)) == m).all()
    with pytest.raises(ValueError, match='same N and C'): dense_match(f, g[:, :8])

# ---------------------------------------------------------------- each loss falls on real images
def _falls(model, xb, steps=8, lr=0.05, loss_fn=None):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    model.train(); losses = []
    for i in range(steps):
        l = (loss_fn or (lambda: model.loss(model(*xb))))()
        opt.zero_grad(); l.backward(); opt.step()
        if hasattr(model, 'on_step'): model.on_step(i / steps)
        losses.append(l.item())
    return losses

def test_byol_loss_falls(imgs):
    set_seed(0); x = imgs.x[:64]; v1, v2 = byol_views(28)
    ls = _falls(BYOL(resnet18(in_chans=1, width=8), 128, 32, 128), (v1(x), v2(x)))
    assert ls[-1] < 0.8 * ls[0], ls

def test_simsiam_loss_falls(imgs):
    set_seed(0); x = imgs.x[:64]; v = view_preset('mocov2', 28)
    ls = _falls(SimSiam(resnet18(in_chans=1, width=8), 128, 128, 32), (v(x), v(x)), steps=12, lr=0.1)
    # the negative cosine starts near 0 (unrelated p and z) and falls slowly at first
    assert ls[-1] < ls[0] - 0.03 and sum(ls[-3:]) < sum(ls[:3]), ls

def test_swav_loss_falls(imgs):
    set_seed(0); x = imgs.x[:64]
    large, small = MultiCropViews(28)(x)
    ls = _falls(SwAV(resnet18(in_chans=1, width=8), 64, 32, n_prototypes=16), (large, small))
    assert ls[-1] < ls[0] - 0.05, ls

def test_densecl_loss_falls(imgs):
    set_seed(0); x = imgs.x[:64]; v = view_preset('mocov2', 28)
    m = DenseCL(resnet18(in_chans=1, width=8), dim=32, queue_size=256)
    xb = (v(x), v(x))
    # against a fixed queue (loss_terms does not push): both terms must fall
    first = [t.item() for t in m.loss_terms(m(*xb))]
    _falls(m, xb, loss_fn=lambda: sum(m.loss_terms(m(*xb))))
    m.train(); last = [t.item() for t in m.loss_terms(m(*xb))]
    assert last[0] < first[0] and last[1] < first[1], (first, last)

# ---------------------------------------------------------------- SwAV training details
def test_swav_prototypes_frozen_then_trained(imgs):
    set_seed(0)
    data = imgs.subset(128, seed=0, balanced=False)
    learn = ssl_learner(data, 'swav', 'test', bs=64, width=8, device='cpu', method_kw=dict(freeze_frac=1.0, n_prototypes=8))
    p0 = learn.model.prototypes.weight.detach().clone(); b0 = learn.model.backbone.conv1.weight.detach().clone()
    learn.fit(1, 0.05)
    learn.model.normalize_prototypes()
    assert torch.allclose(learn.model.prototypes.weight, F.normalize(p0, dim=1), atol=1e-6)   # frozen (only renormalised)
    assert not torch.equal(learn.model.backbone.conv1.weight, b0)
    learn2 = ssl_learner(data, 'swav', 'test', bs=64, width=8, device='cpu', method_kw=dict(freeze_frac=0., n_prototypes=8))
    p0 = F.normalize(learn2.model.prototypes.weight.detach(), dim=1).clone()
    learn2.fit(1, 0.05); learn2.model.normalize_prototypes()
    assert not torch.allclose(learn2.model.prototypes.weight, p0, atol=1e-6)

def test_bad_config_values():
    bb = resnet18(in_chans=1, width=8)
    with pytest.raises(ValueError, match='base_momentum'): BYOL(bb, base_momentum=1.5)
    with pytest.raises(ValueError, match='n_prototypes'): SwAV(bb, n_prototypes=1)
    with pytest.raises(ValueError, match='lam'): DenseCL(bb, lam=2.)
    with pytest.raises(ValueError, match='dense_stage'): DenseCL(bb, dense_stage=5)
    with pytest.raises(ValueError, match='n_large'): MultiCropViews(28, n_large=0)

def test_swav_loss_matches_lightly():
    "An independent implementation: lightly's SwaVLoss (its own Sinkhorn) on the same scores gives the same number."
    lightly_loss = pytest.importorskip('lightly.loss')
    z = F.normalize(torch.randn(6 * 32, 16), dim=1); W = F.normalize(torch.randn(40, 16), dim=1)
    crops = list((z @ W.t()).chunk(6))
    theirs = lightly_loss.SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)(crops[:2], crops[2:])
    ours = swapped_prediction(crops, [sinkhorn(c, 0.05, 3) for c in crops[:2]], T=0.1)
    assert torch.allclose(ours, theirs.reshape(()), atol=1e-5), (ours, theirs)
