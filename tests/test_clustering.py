import pytest, torch
import torch.nn.functional as F
from ssl_learn.cluster import (kmeans, check_k, auto_k, preprocess_features, uniform_cluster_sampler, cluster_weights, nmi)
from ssl_learn.methods.deepcluster import deepcluster, DeepCluster
from ssl_learn.methods.odc import odc, ODCMemory
from ssl_learn.models import resnet18, ResNet, save_backbone, load_backbone
from ssl_learn.data import TensorDL


@pytest.fixture(scope='module')
def fmnist():
    from ssl_learn.data import load_fmnist
    return load_fmnist('train').subset(256, seed=0)


def test_k_larger_than_n_is_a_clear_error(fmnist):
    with pytest.raises(ValueError, match=r'k=300 clusters for only 100 images'): kmeans(torch.randn(100, 8), 300)
    with pytest.raises(ValueError, match='k ≤ 256'): deepcluster(resnet18(in_chans=1, width=8), 28, data=fmnist, k=1000)
    with pytest.raises(ValueError, match='k ≤ 256'): odc(resnet18(in_chans=1, width=8), 28, data=fmnist, k=1000)
    with pytest.raises(ValueError): check_k(1, 10)
    assert auto_k(16384) == 100 and auto_k(512) == 25 and auto_k(30) == 2      # scaled to the data, capped
    r = kmeans(torch.randn(50, 4), 50)                                         # k = n is allowed
    assert r['labels'].unique().numel() == 50


def test_preprocess_whitens_and_normalises():
    f = torch.randn(1000, 16) * torch.linspace(0.1, 5, 16)
    fp, (mu, P) = preprocess_features(f, 4)
    assert fp.shape == (1000, 4) and torch.allclose(fp.norm(dim=1), torch.ones(1000), atol=1e-5)
    assert torch.allclose(torch.cov(((f - mu) @ P).T), torch.eye(4), atol=1e-3)


def test_uniform_sampler_balance():
    lab = torch.cat([torch.zeros(2000, dtype=torch.long), torch.full((5,), 1), torch.arange(2, 12).repeat_interleave(20)])
    g = torch.Generator().manual_seed(0)
    s = uniform_cluster_sampler(lab, generator=g)
    assert len(s) == len(lab) and s.min() >= 0 and s.max() < len(lab)
    cnt = torch.bincount(lab[s], minlength=12).float()
    assert cnt.min() > 0.8 * len(lab) / 12 and cnt.max() < 1.2 * len(lab) / 12      # ≈ N/k each, whatever the sizes
    assert len(set(s[lab[s] == 1].tolist())) == 5                                   # a tiny cluster is drawn with replacement
    with pytest.raises(ValueError): uniform_cluster_sampler(torch.tensor([0, -1, 1]))
    dl = TensorDL(torch.zeros(len(lab), 1, 2, 2, dtype=torch.uint8), bs=100, shuffle=True, drop_last=True,
                  sampler=lambda n: uniform_cluster_sampler(lab, n, g))
    seen = torch.cat([b for _, b in dl]); assert torch.bincount(lab[seen], minlength=12).min() > 150


def test_cluster_weights():
    w = cluster_weights(torch.tensor([0] * 100 + [1] * 25 + [2] * 4), 4)
    assert w[3] == 0 and torch.isclose(w.sum(), torch.tensor(1.)) and torch.isclose(w[2] / w[0], torch.tensor(5.))


def test_odc_dissolve_and_split():
    # 3 directions; cluster 0 is two well-separated sub-groups of 6, cluster 1 has 2 members, cluster 2 has 5
    ang = torch.tensor([-.7] * 6 + [.7] * 6 + [1.2] * 2 + [3.] * 5)
    m = ODCMemory(19, 2, k=3)
    m.init(torch.stack([ang.cos(), ang.sin()], 1), torch.tensor([0] * 12 + [1] * 2 + [2] * 5))
    assert m.repair(min_cluster=4) == 1
    lab = m.labels
    # the 2 members of the small cluster went to the nearest big centroid (cluster 0, at angle 0), which then was the
    # largest (14) and was split by 2-means: one of its sub-groups got the freed id 1
    assert set(lab[12:14].tolist()) <= {0, 1} and len(set(lab[:6].tolist())) == 1 and len(set(lab[6:12].tolist())) == 1
    assert lab[0] != lab[6] and lab[14:].eq(2).all()
    assert sorted(m.counts().tolist()) == [5, 6, 8]
    # the centroids were updated for the two halves
    for c in range(3): assert torch.allclose(m.centroids[c], m.bank[lab == c].mean(0), atol=1e-5)
    assert m.repair(min_cluster=4) == 0
    with pytest.raises(ValueError, match='every cluster'): m.repair(min_cluster=100)


def test_odc_relabel_and_change_ratio():
    m = ODCMemory(4, 2, k=2)
    m.init(torch.tensor([[1., 0], [1, .1], [0, 1], [.1, 1]]), torch.tensor([0, 0, 1, 1]))
    m.update(torch.tensor([0]), torch.tensor([[0., 1.]])); m.update(torch.tensor([0]), torch.tensor([[0., 1.]]))
    assert m.relabel(torch.tensor([0, 2])) == 0.5 and m.labels.tolist() == [1, 0, 1, 1]


def test_sobel_backbone_roundtrip(tmp_path):
    bb = resnet18(in_chans=1, width=8, sobel=True)
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    save_backbone(bb, tmp_path/'b.pth'); bb2 = load_backbone(tmp_path/'b.pth')
    assert bb2.config.get('sobel') and torch.allclose(bb.eval()(x), bb2.eval()(x))
    assert all('sobel' not in k for k in bb.state_dict())           # the fixed filter is not a weight


def _steps(m, cb, x, idx, n=12, lr=0.05):
    class _L: training = True; model = m
    cb.learn = _L(); m.train()
    opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9); losses = []
    for i in range(n):
        xb, (y,) = cb.make_views(x, idx)
        loss = m.loss(m(*xb), y); opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
        if hasattr(m, 'on_step'): m.on_step(i / n)
    return losses


def test_deepcluster_loss_falls_and_state_in_buffers(fmnist):
    torch.manual_seed(0)
    m, cb = deepcluster(resnet18(in_chans=1, width=8), 28, data=fmnist, k=8)
    st = m.cluster(fmnist.x, seed=0)
    assert st['empty'] == 0 and m.labels.min() >= 0 and 0 < nmi(m.labels, fmnist.y) < 1
    sd = m.state_dict(); assert {'labels', 'centroids', 'pca_mean', 'pca_proj'} <= set(sd)
    lab0 = m.labels.clone(); m.cluster(fmnist.x, seed=0); assert torch.equal(lab0, m.labels)   # same seed, same clustering
    idx = torch.arange(64)
    losses = _steps(m, cb, fmnist.x[idx], idx, n=25, lr=0.05)    # strong views, a fresh head: it learns slowly
    assert abs(losses[0] - torch.log(torch.tensor(8.)).item()) < 0.2
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.08, losses


def test_odc_loss_falls_and_memory_updates(fmnist):
    torch.manual_seed(0)
    m, cb = odc(resnet18(in_chans=1, width=8), 28, data=fmnist, k=8)
    m.initialize(fmnist.x, seed=0)
    assert bool(m.initialized) and m.memory.counts().min() >= m.min_cluster
    bank0 = m.memory.bank.clone()
    idx = torch.arange(64)
    losses = _steps(m, cb, fmnist.x[idx], idx)
    assert int(m.n_steps) == 12 and not torch.equal(bank0[:64], m.memory.bank[:64]) and torch.equal(bank0[64:], m.memory.bank[64:])
    assert torch.allclose(m.memory.bank.norm(dim=1), torch.ones(256), atol=1e-4)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
    assert {'memory.bank', 'memory.labels', 'memory.centroids', 'class_weight', 'n_steps'} <= set(m.state_dict())


class _StopAfter(__import__('fastai.callback.core', fromlist=['Callback']).Callback):
    "Simulate an interruption right after epoch `n` has been checkpointed."
    order = 100
    def __init__(self, n): self.n = n
    def after_epoch(self):
        from fastai.callback.core import CancelFitException
        if self.epoch == self.n: raise CancelFitException()


@pytest.fixture
def one_thread():
    "Bit-exact runs need deterministic reductions: one torch and one faiss thread (with two, float sums vary run to run)."
    import faiss
    n = torch.get_num_threads(); torch.set_num_threads(1); faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(n); faiss.omp_set_num_threads(n)

@pytest.mark.parametrize('method', ['deepcluster', 'odc'])
def test_exact_resume(method, fmnist, tmp_path, one_thread):
    # all clustering state (labels, centroids, PCA, bank, step counter) is in buffers: an interrupted run resumes exactly
    from ssl_learn.core import set_seed
    from ssl_learn.learner import ssl_learner, load_checkpoint
    def make(path):
        set_seed(0); return ssl_learner(fmnist, method, 'test', path=path, bs=64, width=8, device='cpu')
    a = make(tmp_path/'a'); a.fit_one_cycle(3, 0.05)
    b = make(tmp_path/'b'); b.fit_one_cycle(3, 0.05, cbs=_StopAfter(1))
    torch.rand(100)
    c = make(tmp_path/'b'); start = load_checkpoint(c, tmp_path/'b'/'last.pth'); assert start == 2
    c.fit_one_cycle(3, 0.05, start_epoch=start)
    sa, sc = a.model.state_dict(), c.model.state_dict()
    assert sa.keys() == sc.keys()
    for k in sa:
        if k != 'cluster_seconds': assert torch.equal(sa[k], sc[k]), k     # a timing, not state
