"""GPU readiness without a GPU (issue 20): for every registered method, all state moves with `model.to(device)`, one
training step is finite under autocast (bf16, fp16), and what a skipped (overflowed) mixed-precision step does to the
per-step EMA / queue updates."""
import math
import pytest, torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.fp16 import MixedPrecision
from ssl_learn.data import load_fmnist
from ssl_learn.learner import ssl_learner
from ssl_learn.method import list_methods, MethodCallback

METHODS = list_methods()

# Plain tensor attributes of a model that are deliberately NOT buffers. Keep this short, each with its reason.
ALLOWED_TENSOR_ATTRS = {
    # the true classes, kept only to compute the NMI metric on the CPU (`ClusterNMI` moves them to the CPU itself);
    # never used in training, and not saved in checkpoints on purpose
    ('deepcluster', 'nmi_labels'), ('odc', 'nmi_labels'),
}

@pytest.fixture(scope='module')
def train(): return load_fmnist('train').subset(256)

def _learner(train, method):
    learn = ssl_learner(train, method, 'test', device='cpu')
    cb = next(c for c in learn.cbs if isinstance(c, MethodCallback))
    assert cb.learn is learn and learn.model is not None
    m = learn.model   # the clustering methods label their batches from a clustering made before training
    if hasattr(m, 'cluster'): m.cluster(train.x, seed=0, device='cpu')            # DeepCluster: before_train's work
    if hasattr(m, 'initialize'): m.initialize(train.x, seed=0, device='cpu')      # ODC: before_fit's work
    return learn, cb

def _tensors_in(v):
    "Tensors held directly in `v` or in a (nested) list / tuple / dict / set."
    if isinstance(v, torch.Tensor): yield v
    elif isinstance(v, dict):
        for e in v.values(): yield from _tensors_in(e)
    elif isinstance(v, (list, tuple, set)):
        for e in v: yield from _tensors_in(e)

def stray_tensors(model):
    "`(module path, attribute)` of tensors in a module's `__dict__` that are neither parameters nor buffers."
    out = []
    for path, mod in model.named_modules():
        for k, v in vars(mod).items():
            if k in ('_parameters', '_buffers', '_modules'): continue
            if any(True for _ in _tensors_in(v)): out.append((path, k))
    return out

# ---------------------------------------------------------------- 1. device placement
def test_stray_tensor_scan_finds_plain_attributes():
    m = torch.nn.Sequential(torch.nn.Linear(2, 2)); m[0].bank = torch.zeros(3); m.cache = [(torch.ones(1), 1)]
    m.register_buffer('ok', torch.zeros(1))
    assert sorted(stray_tensors(m)) == [('', 'cache'), ('0', 'bank')]

@pytest.mark.parametrize('method', METHODS)
def test_all_state_moves_with_the_model(train, method):
    learn, _ = _learner(train, method)
    stray = [(p, k) for p, k in stray_tensors(learn.model) if (method, f"{p + '.' if p else ''}{k}")
             not in ALLOWED_TENSOR_ATTRS]
    assert not stray, f"{method}: tensors outside the parameters/buffers, missed by .to(): {stray}"
    learn.model.to('meta')
    off = [n for n, t in [*learn.model.named_parameters(), *learn.model.named_buffers()] if t.device.type != 'meta']
    assert not off, f"{method}: not moved by .to('meta'): {off}"

# ---------------------------------------------------------------- 2. autocast
def _fp16_autocast_ok():
    try:
        with torch.autocast('cpu', dtype=torch.float16): y = torch.ones(2, 2) @ torch.ones(2, 2)
        return y.dtype == torch.float16
    except Exception: return False

DTYPES = [pytest.param(torch.bfloat16, id='bf16'),
          pytest.param(torch.float16, id='fp16', marks=pytest.mark.skipif(
              not _fp16_autocast_ok(), reason=f"CPU autocast does not support float16 in torch {torch.__version__}"))]

def _xb_yb(cb, x, idx):
    cb.learn.training = True   # as TrainEvalCallback.before_train sets it
    xb, yb = cb.make_views(x, idx, True)
    xb = cb.learn.model.to_layout(xb, x.device)   # the model's layout, as `MethodCallback.before_batch` uses
    return xb, yb

@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('method', METHODS)
def test_training_step_finite_under_autocast(train, method, dtype):
    learn, cb = _learner(train, method)
    model = learn.model.train()
    x, idx = train.x[:32], torch.arange(32)
    with torch.autocast('cpu', dtype=dtype):
        xb, yb = _xb_yb(cb, x, idx)
        pred = model(*xb)
        loss = model.loss(pred, *yb)
    assert loss.ndim == 0 and torch.isfinite(loss), f"{method} under {dtype}: loss {loss}"
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads, f"{method}: no gradients"
    bad = [n for n, g in grads.items() if not torch.isfinite(g).all()]
    assert not bad, f"{method} under {dtype}: non-finite gradients in {bad}"

# ---------------------------------------------------------------- 3. a step the grad scaler skips
class CPUMixedPrecision(MixedPrecision):
    """fastai's `MixedPrecision`, unchanged except for its device: fastai hard-codes `autocast('cuda')` and
    `GradScaler('cuda')` (the latter disables itself without CUDA, so on a CPU it never skips a step)."""
    @property
    def name(self): return 'mixed_precision'    # what `DivergenceGuard` looks for to tolerate one overflowed batch
    def before_fit(self):
        self.autocast, self.learn.scaler, self.scales = (torch.autocast('cpu', dtype=torch.float16),
                                                         torch.amp.GradScaler('cpu'), [])

class InfLossOnce(Callback):
    "Make the first training batch's loss +inf (as an fp16 overflow would), then stop after that batch."
    order = 5   # after_loss: before MixedPrecision (10) scales the loss in before_backward
    def after_loss(self): self.learn.loss_grad = self.loss_grad * math.inf
    def after_step(self): self.stepped = True
    def after_cancel_step(self): self.cancelled = True
    def after_batch(self): raise CancelFitException()

@pytest.mark.parametrize('method', ['moco_v2', 'byol'])
def test_skipped_step_still_runs_on_step(train, method):
    """What happens today: when the grad scaler finds inf/nan gradients, fastai's `MixedPrecision.before_step` raises
    `CancelStepException`; `Learner._with_events` catches it, calls `after_cancel_step` and then STILL calls
    `after_step` on every callback. So `MethodCallback.after_step` → `model.on_step` runs on the skipped step: the EMA
    (key / target) encoder moves toward the unchanged online weights, and (MoCo) the queue push, done in `loss` before
    the backward, has happened too. The optimiser step itself (and so the online weights) is skipped.
    This is harmless for an EMA of weights that did not change (one extra momentum step), but it is the behaviour:
    a change (e.g. skipping `on_step` on cancelled steps) should update this test."""
    learn, _ = _learner(train, method)
    model = learn.model
    online = model.backbone
    target = model.backbone_k if method == 'moco_v2' else model.target_backbone
    with torch.no_grad():                        # make the EMA copy differ from the online net, so an update shows
        for p in target.parameters(): p.add_(torch.randn_like(p))
    online0 = [p.detach().clone() for p in online.parameters()]
    target0 = [p.detach().clone() for p in target.parameters()]
    keys0 = model.queue.keys.clone() if method == 'moco_v2' else None
    probe = InfLossOnce()
    learn.fit(1, 0.05, cbs=[CPUMixedPrecision(), probe])
    # the step was skipped: cancelled, the online weights untouched, the scale lowered
    assert getattr(probe, 'cancelled', False)
    assert all(torch.equal(a, b) for a, b in zip(online0, online.parameters()))
    # ... yet after_step fired and on_step moved the EMA copy toward the online weights
    assert getattr(probe, 'stepped', False)
    assert not all(torch.equal(a, b) for a, b in zip(target0, target.parameters()))
    d0 = sum((a - b).pow(2).sum() for a, b in zip(target0, online0))
    d1 = sum((a - b).pow(2).sum() for a, b in zip(target.parameters(), online0))
    assert d1 < d0
    assert all(torch.isfinite(p).all() for p in target.parameters())
    if method == 'moco_v2': assert not torch.equal(model.queue.keys, keys0)   # the batch's keys were queued as well
