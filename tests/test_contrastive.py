"""The instance-discrimination family (NPID, MoCo v1/v2, SimCLR): losses against hand-computed values, the queue,
the EMA update, the memory bank, shuffle-BN, and each method's loss falling over a few steps on real images."""
import math
import pytest, torch
import torch.nn.functional as F
from torch import nn
from ssl_learn.losses import info_nce, nt_xent
from ssl_learn.memory import Queue, MemoryBank
from ssl_learn.momentum import ema_update, momentum_copy
from ssl_learn.models import resnet18
from ssl_learn.methods.npid import npid, NPID
from ssl_learn.methods.moco import moco_v1, moco_v2, MoCo, grouped
from ssl_learn.methods.simclr import simclr


class _Id(nn.Module):
    "A 2-d 'backbone' that passes its input through, so embeddings can be set by hand."
    out_dim = 2
    def forward(self, x): return x


# --- losses, hand-computed -----------------------------------------------------------------------------------
def test_info_nce_hand_computed():
    q = torch.tensor([[1., 0.]]); k = torch.tensor([[2., 0.]]); neg = torch.tensor([[0., 1.], [-1., 0.]])
    # logits [1, 0, -1] / T (T=1): -log(e / (e + 1 + e^-1))
    want = -math.log(math.e / (math.e + 1 + math.exp(-1)))
    assert abs(info_nce(q, k, neg, T=1.0).item() - want) < 1e-6
    # T = 0.5 doubles the logits
    want = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    assert abs(info_nce(q, k, neg, T=0.5).item() - want) < 1e-6
    with pytest.raises(ValueError): info_nce(q, k, torch.zeros(3, 5))


def test_nt_xent_hand_computed():
    # two images, two orthogonal directions, the views identical: each row sees its partner at cos 1 and two others at 0
    z = torch.tensor([[1., 0.], [0., 1.]])
    assert abs(nt_xent(z, z, T=1.0).item() - math.log(1 + 2 / math.e)) < 1e-6
    # one image: the partner is the only candidate, the loss is exactly 0
    assert nt_xent(torch.tensor([[1., 2.]]), torch.tensor([[3., -1.]]), T=0.1).item() == pytest.approx(0., abs=1e-6)


# --- the queue -----------------------------------------------------------------------------------------------
def test_queue_pointer_and_contents_after_steps():
    q = Queue(8, 2)
    batches = [F.normalize(torch.randn(3, 2), dim=1) for _ in range(3)]
    for b in batches: q.push(b)
    assert q.ptr.item() == 9 % 8
    # slots 0..2, 3..5 hold batches 0 and 1; slots 6, 7 then 0 hold batch 2 (wrapped)
    assert torch.allclose(q.keys[3:6], batches[1]) and torch.allclose(q.keys[6:8], batches[2][:2])
    assert torch.allclose(q.keys[0], batches[2][2]) and torch.allclose(q.keys[1:3], batches[0][1:])


def test_moco_queue_advances_by_batch_in_training_only():
    torch.manual_seed(0)
    m, cb = moco_v2(resnet18(in_chans=1, width=8), 28, queue_size=8, bn_groups=2)
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    keys = []
    for step in range(3):
        (v1, v2), (i,) = cb.make_views(x, torch.arange(4))
        q, k = m(v1, v2); keys.append(k); m.loss((q, k), i)
        assert m.queue.ptr.item() == (4 * (step + 1)) % 8
    assert torch.allclose(m.queue.keys[:4], keys[2]) and torch.allclose(m.queue.keys[4:], keys[1])
    m.eval(); m.loss(m(v1, v2)); assert m.queue.ptr.item() == 4     # validation pushes nothing


def test_moco_negatives_are_the_queue_before_the_push():
    torch.manual_seed(0)
    m = MoCo(_Id(), dim=2, queue_size=2, T=1.0, mlp=False, bn_groups=1)
    with torch.no_grad():
        for h in (m.head, m.head_k): h.weight.copy_(torch.eye(2)); h.bias.zero_()
    m.queue.keys.copy_(torch.tensor([[0., 1.], [-1., 0.]]))
    x = torch.tensor([[1., 0.]])
    l = m.loss(m(x, x))                   # logits [1, 0, -1]: the pushed key is not its own negative
    assert abs(l.item() + math.log(math.e / (math.e + 1 + math.exp(-1)))) < 1e-5
    assert torch.allclose(m.queue.keys[0], torch.tensor([1., 0.]))


# --- the EMA update ------------------------------------------------------------------------------------------
def test_ema_update_and_moco_after_step():
    online = nn.Linear(2, 1); target = momentum_copy(online)
    assert not any(p.requires_grad for p in target.parameters())
    w0 = target.weight.clone()
    with torch.no_grad(): online.weight.add_(2.0)
    ema_update(target, online, 0.75)
    assert torch.allclose(target.weight, w0 + 0.25 * 2.0)
    torch.manual_seed(0)
    m, _ = moco_v1(resnet18(in_chans=1, width=8), 28, momentum=0.9)
    assert all(torch.equal(a, b) for a, b in zip(m.backbone.parameters(), m.backbone_k.parameters()))
    k0 = [p.clone() for p in m.head_k.parameters()]
    with torch.no_grad():
        for p in m.head.parameters(): p.add_(1.0)
    m.on_step(0.5)
    for p, p0 in zip(m.head_k.parameters(), k0): assert torch.allclose(p, p0 + 0.1, atol=1e-6)



def test_moco_in_a_learner_updates_once_per_step(fmnist128):
    "fastai passes other callbacks' events on to the model: the model's hook must run exactly once per optimizer step."
    from ssl_learn.learner import ssl_learner
    learn = ssl_learner(fmnist128, 'moco_v2', 'test', bs=64, width=8, device='cpu')
    calls, hook = [], learn.model.on_step
    learn.model.on_step = lambda p: (calls.append(p), hook(p))
    learn.fit(1, 0.01)                                           # 128 images, batch 64: 2 steps
    assert len(calls) == 2 and calls[0] < calls[1] <= 1, calls
    assert not hasattr(learn.model, 'after_step')

# --- the memory bank -----------------------------------------------------------------------------------------
def test_memory_bank_update_by_npid_loss():
    m = NPID(_Id(), n=4, dim=2, n_neg=2, T=0.07, momentum=0.5)
    with torch.no_grad(): m.head.weight.copy_(torch.eye(2)); m.head.bias.zero_()
    m.bank.bank.copy_(torch.tensor([[1., 0.], [0., 1.], [1., 0.], [0., 1.]]))
    m.loss(m(torch.tensor([[0., 2.], [4., 0.]])), torch.tensor([0, 3]))
    s = 2 ** -0.5
    assert torch.allclose(m.bank.bank, torch.tensor([[s, s], [0., 1.], [1., 0.], [s, s]]), atol=1e-6)
    before = m.bank.bank.clone()
    m.eval(); m.loss(m(torch.tensor([[1., 1.]]), torch.tensor([[1., 0.]])), None)
    assert torch.equal(m.bank.bank, before)                        # validation leaves the bank alone


def test_npid_negatives_avoid_the_batch():
    torch.manual_seed(0)
    m = NPID(_Id(), n=10, dim=2, n_neg=50)
    idx = torch.tensor([0, 1, 2, 3, 4])
    neg = m.negatives(idx)
    assert len(neg) == 50 and not torch.isin(neg, idx).any()
    with pytest.raises(ValueError): npid(_Id(), 28, data=None)


def test_shuffle_bn_groups_undo_the_permutation():
    torch.manual_seed(0)
    enc = resnet18(in_chans=1, width=8)
    x = torch.rand(12, 1, 28, 28); perm = torch.randperm(12)
    enc.eval(); assert torch.allclose(grouped(enc, x, 3, perm), enc(x), atol=1e-5)
    enc.train(); assert not torch.allclose(grouped(enc, x, 3, perm), grouped(enc, x, 3), atol=1e-3)
    with pytest.raises(ValueError): grouped(enc, x, 0)


# --- each method's loss falls on real images -----------------------------------------------------------------
@pytest.fixture(scope='module')
def fmnist128():
    from ssl_learn.data import load_fmnist
    return load_fmnist('train').subset(128, seed=0)

# MoCo with a fast key encoder (m=0.9): with the default 0.999 the keys stay those of the random network for
# hundreds of steps, nearly identical to each other, and the loss cannot move in a few steps
# (builder, its options, Adam lr, steps)
BUILDERS = {'npid': (npid, dict(n_neg=64), 2e-3, 20), 'moco_v1': (moco_v1, dict(queue_size=32, momentum=0.9), 2e-3, 30),
            'moco_v2': (moco_v2, dict(queue_size=32, momentum=0.9), 2e-3, 30), 'simclr': (simclr, {}, 1e-3, 20)}

@pytest.mark.parametrize('name', list(BUILDERS))
def test_loss_falls_on_real_images(name, fmnist128):
    torch.manual_seed(0)
    data = fmnist128
    build, kw, lr, steps = BUILDERS[name]
    model, cb = build(resnet18(in_chans=1, width=8), 28, data=data, **kw)
    if isinstance(model, NPID): model.fill_bank(data.x)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    bs, losses = 32, []
    for s in range(steps):
        idx = torch.arange(s * bs, (s + 1) * bs) % len(data)
        xb, yb = cb.make_views(data.x[idx], idx)
        loss = model.loss(model(*xb), *yb)
        opt.zero_grad(); loss.backward(); opt.step()
        if hasattr(model, 'on_step'): model.on_step(s / steps)
        losses.append(loss.item())
    # step 0 meets a queue of random vectors (easy negatives): compare steps 1-5 with the last 5
    first, last = sum(losses[1:6]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.1, (name, [round(l, 3) for l in losses])
