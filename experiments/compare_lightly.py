"""Side-by-side benchmark of ssl_learn's methods against the `lightly` package (pip install 'ssl_learn[compare]').

For each method: the same data (the cpu tier's 16,384 Fashion-MNIST pre-training images), the same backbone
(`ssl_learn.learner.make_backbone`, the same seed, so the same initial weights), the same batch, number of views,
epochs, optimizer (SGD, momentum 0.9, decoupled weight decay, no decay on BN and bias, as fastai does) and schedule
(fastai's one-cycle: lr and momentum per step). The method's own settings (temperature, queue length, EMA
momentum) are read from ssl_learn's model so both sides use the same values.

* ours: `ssl_learn.learner.ssl_learner(...).fit_one_cycle(...)`, batched views on the device;
* theirs: lightly's transform for the method (MoCoV2Transform, SimCLRTransform, BYOLTransform, SwaVTransform, adapted to 28-px grey images)
  applied per image in a torch DataLoader with `--workers` processes, lightly's heads, loss (with its memory bank
  for MoCo) and `update_momentum`, in a plain PyTorch loop, as lightly's examples do; in a fresh process with the C
  library's own malloc settings (importing ssl_learn tunes glibc's malloc process-wide; `--theirs-malloc tuned`
  keeps lightly's side in this process, sharing the tuning).

Reported: training images/s (training loop only, data loading and augmentation included; the kNN evaluation
excluded) and weighted-kNN top-1 (k=20, 200; T=0.07) on the full 60k/10k Fashion-MNIST split, for both sides, and
the ratios ours/theirs, in results/comparisons/lightly/<method>/seed<N>.json (N: --seed). The whole run holds the
machine-wide CPU lock.

Add a method: write `lightly_<name>(backbone, ref) -> LightlySide` (ref: ssl_learn's model, for its settings) and
an entry in METHODS.

Usage (from the repository root): python -m experiments.compare_lightly [--methods moco_v2,simclr] [--seed 0] [--epochs 3] [--workers 2]
  e.g. python -m experiments.compare_lightly --methods simclr --seed 3
lightly is imported only when a run starts (`--help` works without it).
"""
from __future__ import annotations
import argparse, copy, fcntl, json, math, sys, time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
import torch, torch.nn as nn

from ssl_learn.core import get_tier, set_seed, provenance, atomic_save
from ssl_learn.data import get_data
from ssl_learn.learner import ssl_learner
from ssl_learn.data import prepare_data
from ssl_learn.models import make_backbone
from ssl_learn.eval.knn import knn_eval


# ---------------------------------------------------------------------------------------------------------------
# lightly's side of each method
@dataclass
class LightlySide:
    model: nn.Module                                   # everything with parameters or state (heads, EMA copies, loss with its memory bank)
    transform: Callable                                # PIL image -> list of views (lightly's transform for the method)
    step: Callable                                     # (model, views, progress) -> loss, one training step's forward
    settings: dict


def _grey_transform_kw() -> dict:
    "Adapting lightly's transforms to 28-px grey images the way ours are: crop ≥ 20% of the area, blur σ scaled by 28/224, no ImageNet normalisation (the backbone normalises)."
    return dict(input_size=28, min_scale=0.2, sigmas=(0.1, 2.0 * 28 / 224), normalize=None)


def lightly_moco_v2(backbone: nn.Module, ref) -> LightlySide:
    "lightly's MoCo v2, as in its examples: MoCoProjectionHead, NTXentLoss with a memory bank, update_momentum before the keys."
    from lightly.loss import NTXentLoss
    from lightly.models.modules import MoCoProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import MoCoV2Transform
    d, dim, K, m, T = backbone.out_dim, ref.queue.keys.shape[1], len(ref.queue), ref.momentum, ref.T

    class MoCo(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.projection_head = backbone, MoCoProjectionHead(d, d, dim)
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            deactivate_requires_grad(self.backbone_momentum); deactivate_requires_grad(self.projection_head_momentum)
            self.criterion = NTXentLoss(temperature=T, memory_bank_size=(K, dim))
        def forward(self, x): return self.projection_head(self.backbone(x).flatten(start_dim=1))
        def forward_momentum(self, x): return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()

    def step(model, views, progress):
        x_query, x_key = views
        update_momentum(model.backbone, model.backbone_momentum, m=m)
        update_momentum(model.projection_head, model.projection_head_momentum, m=m)
        return model.criterion(model(x_query), model.forward_momentum(x_key))

    tkw = _grey_transform_kw()
    return LightlySide(MoCo(), MoCoV2Transform(**tkw), step,
                       dict(head='MoCoProjectionHead(d, d, 128)', loss=f'NTXentLoss(T={T}, memory_bank_size=({K}, {dim}))',
                            momentum=m, transform=f'MoCoV2Transform({tkw})'))


def lightly_simclr(backbone: nn.Module, ref) -> LightlySide:
    "lightly's SimCLR, as in its examples: SimCLRProjectionHead, NTXentLoss (in-batch negatives), one forward per view."
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    d, T = backbone.out_dim, ref.T
    dim = ref.head[-1].num_features if isinstance(ref.head[-1], nn.BatchNorm1d) else 128

    class SimCLR(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.projection_head = backbone, SimCLRProjectionHead(d, d, dim)
            self.criterion = NTXentLoss(temperature=T)
        def forward(self, x): return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def step(model, views, progress):
        x0, x1 = views
        return model.criterion(model(x0), model(x1))

    tkw = _grey_transform_kw()
    return LightlySide(SimCLR(), SimCLRTransform(**tkw), step,
                       dict(head=f'SimCLRProjectionHead(d, d, {dim})', loss=f'NTXentLoss(T={T})', transform=f'SimCLRTransform({tkw})'))


def lightly_byol(backbone: nn.Module, ref) -> LightlySide:
    "lightly's BYOL, as in its examples: BYOLProjectionHead/BYOLPredictionHead, NegativeCosineSimilarity, update_momentum with cosine_schedule, one forward per view."
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform
    from lightly.utils.scheduler import cosine_schedule
    d, hid, dim = backbone.out_dim, ref.projector[0].out_features, ref.projector[-1].out_features
    phid, base = ref.predictor[0].out_features, ref.base_momentum

    class BYOL(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.projection_head = backbone, BYOLProjectionHead(d, hid, dim)
            self.prediction_head = BYOLPredictionHead(dim, phid, dim)
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            deactivate_requires_grad(self.backbone_momentum); deactivate_requires_grad(self.projection_head_momentum)
            self.criterion = NegativeCosineSimilarity()
        def forward(self, x): return self.prediction_head(self.projection_head(self.backbone(x).flatten(start_dim=1)))
        def forward_momentum(self, x): return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()

    def step(model, views, progress):
        x0, x1 = views
        m = cosine_schedule(progress, 2, base, 1.)            # max_steps=2: base→1 along cos(π·progress), ssl_learn's per-step schedule
        update_momentum(model.backbone, model.backbone_momentum, m=m)
        update_momentum(model.projection_head, model.projection_head_momentum, m=m)
        p0, z0, p1, z1 = model(x0), model.forward_momentum(x0), model(x1), model.forward_momentum(x1)
        # lightly's example averages the two directions (0.5·(L01 + L10), L = −cos); BYOL's and MMSelfSup's loss is
        # 2·(L01 + L10) (ssl_learn's 2−2cos form differs by a constant): the same scale here, so equal gradients
        return 2 * (model.criterion(p0, z1) + model.criterion(p1, z0))

    tkw = _grey_transform_kw()
    tr = BYOLTransform(BYOLView1Transform(**tkw), BYOLView2Transform(**tkw))
    return LightlySide(BYOL(), tr, step,
                       dict(heads=f'BYOLProjectionHead({d}, {hid}, {dim}), BYOLPredictionHead({dim}, {phid}, {dim})',
                            loss='2·(NegativeCosineSimilarity(p0, z1) + NegativeCosineSimilarity(p1, z0))',
                            momentum=f'cosine_schedule from {base} to 1 per step, update_momentum before the forward',
                            transform=f'BYOLTransform(BYOLView1Transform({tkw}), BYOLView2Transform({tkw}))'))


def lightly_swav(backbone: nn.Module, ref) -> LightlySide:
    "lightly's SwAV, as in its examples: SwaVProjectionHead, SwaVPrototypes (normalised each step, frozen at first), SwaVLoss, one forward per crop."
    import inspect
    from lightly.loss import SwaVLoss
    from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes
    from lightly.transforms import SwaVTransform
    from ssl_learn.methods.swav import swav as ours_builder
    d, hid, dim = backbone.out_dim, ref.projector[0].out_features, ref.projector[-1].out_features
    K, n_large, n_small = ref.prototypes.out_features, ref.n_large, ref.n_crops - ref.n_large
    ps = inspect.signature(ours_builder).parameters
    freeze, small, lsc, ssc = (ps[k].default for k in ('freeze_frac', 'small_size', 'large_scale', 'small_scale'))
    small = small or 28 // 2
    STEPS = 10**6                                             # progress (0→1) as an integer step for the frozen-prototype count

    class SwaV(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.projection_head = backbone, SwaVProjectionHead(d, hid, dim)
            self.prototypes = SwaVPrototypes(dim, n_prototypes=K, n_steps_frozen_prototypes=int(freeze * STEPS))
            self.criterion = SwaVLoss(temperature=ref.T, sinkhorn_iterations=ref.sinkhorn_iters, sinkhorn_epsilon=ref.eps)
        def forward(self, x, step):
            x = nn.functional.normalize(self.projection_head(self.backbone(x).flatten(start_dim=1)), dim=1, p=2)
            return self.prototypes(x, step)

    def step(model, views, progress):
        model.prototypes.normalize()
        out = [model(v, int(progress * STEPS)) for v in views]
        return model.criterion(out[:n_large], out[n_large:])

    tkw = _grey_transform_kw()
    tr = SwaVTransform(crop_sizes=(28, small), crop_counts=(n_large, n_small), crop_min_scales=(lsc[0], ssc[0]),
                       crop_max_scales=(lsc[1], ssc[1]), sigmas=tkw['sigmas'], normalize=None)
    return LightlySide(SwaV(), tr, step,
                       dict(heads=f'SwaVProjectionHead({d}, {hid}, {dim}), SwaVPrototypes({dim}, {K}, frozen for the first {freeze:.0%} of steps)',
                            loss=f'SwaVLoss(T={ref.T}, sinkhorn_iterations={ref.sinkhorn_iters}, sinkhorn_epsilon={ref.eps})',
                            transform=f'SwaVTransform(crop_sizes=(28, {small}), crop_counts=({n_large}, {n_small}), '
                                      f'min scales ({lsc[0]}, {ssc[0]}), max scales ({lsc[1]}, {ssc[1]}), sigmas={tkw["sigmas"]}, normalize=None)'))


# name -> ssl_learn method (and options) and lightly's builder
METHODS = {
    'moco_v2': dict(ours='moco_v2', ours_kw={}, lightly=lightly_moco_v2),
    'simclr': dict(ours='simclr', ours_kw={}, lightly=lightly_simclr),
    'byol': dict(ours='byol', ours_kw={}, lightly=lightly_byol),
    'swav': dict(ours='swav', ours_kw={}, lightly=lightly_swav),
}


# ---------------------------------------------------------------------------------------------------------------
# the common harness
class _PILDataset(torch.utils.data.Dataset):
    "uint8 N×1×H×W images as PIL grey images through `transform` (what torchvision's FashionMNIST dataset does)."
    def __init__(self, x, transform): self.x, self.transform = x, transform
    def __len__(self): return len(self.x)
    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i, 0].numpy(), mode='L')), i


def _schedules(lr: float, n_steps: int):
    "fastai's fit_one_cycle defaults: lr from lr/25 up to lr (cosine, first 25%) then down to lr/1e5; momentum 0.95 → 0.85 → 0.95."
    from fastai.callback.schedule import combined_cos
    lr_f, mom_f = combined_cos(0.25, lr / 25, lr, lr / 1e5), combined_cos(0.25, 0.95, 0.85, 0.95)
    return [(float(lr_f(i / n_steps)), float(mom_f(i / n_steps))) for i in range(n_steps)]


def _decay_groups(model: nn.Module):
    "fastai's default: weight decay on weights, none on BN parameters and biases."
    decay, no_decay = [], []
    for mod in model.modules():
        for n, p in mod.named_parameters(recurse=False):
            if not p.requires_grad: continue
            (no_decay if isinstance(mod, nn.modules.batchnorm._BatchNorm) or n == 'bias' else decay).append(p)
    return decay, no_decay


class PlainSGD:
    "The plain PyTorch loop's optimizer, set up as fastai's Learner does: SGD with momentum, decoupled weight decay on weights only (none on BN and biases)."
    def __init__(self, model: nn.Module, lr: float, wd: float):
        self.decay, self.no_decay = _decay_groups(model)
        self.opt, self.wd = torch.optim.SGD([dict(params=self.decay), dict(params=self.no_decay)], lr=lr, momentum=0.9), wd
    def step(self, loss, lr: float, mom: float):
        "Backward `loss` and take one step at this step's `lr` and momentum."
        for g in self.opt.param_groups: g['lr'], g['momentum'] = lr, mom
        self.opt.zero_grad(set_to_none=True); loss.backward()
        with torch.no_grad(): torch._foreach_mul_(self.decay, 1 - lr * self.wd)      # decoupled weight decay
        self.opt.step()


def run_theirs(entry, pre, tier, ref, seed: int, workers: int) -> dict:
    set_seed(seed)
    backbone = make_backbone(tier, pre)
    init_w = backbone.conv1.weight.detach().clone()
    side = entry['lightly'](backbone, ref)
    model = side.model.train()
    dl = torch.utils.data.DataLoader(_PILDataset(pre.x, side.transform), batch_size=tier.bs, shuffle=True, drop_last=True,
                                     num_workers=workers, persistent_workers=workers > 0)
    opt = PlainSGD(model, tier.lr, tier.wd)
    sched = _schedules(tier.lr, tier.epochs * len(dl))
    epochs, step, losses = [], 0, []
    for ep in range(tier.epochs):
        t0, n = time.time(), 0
        for views, _ in dl:
            loss = side.step(model, views, step / len(sched))
            opt.step(loss, *sched[step])
            losses.append(loss.item()); n += len(views[0]); step += 1
        dt = time.time() - t0
        epochs.append(dict(epoch=ep, seconds=round(dt, 2), images_per_s=round(n / dt, 1), loss=round(sum(losses[-len(dl):]) / len(dl), 4)))
        print(f"  theirs epoch {ep}: {epochs[-1]}", flush=True)
    return dict(backbone=backbone, init_w=init_w, epochs=epochs, settings=side.settings, workers=workers)


def run_ours(entry, pre, tier, seed: int, prepare: Callable | None = None) -> dict:
    "Our side: `ssl_learner(pre, entry['ours'], ...)` trained with fit_one_cycle; `prepare(learn)`, if given, adjusts the learner before training (an ablation's variant)."
    from fastai.callback.core import Callback
    class Timer(Callback):
        order = 100
        def before_fit(self): self.epochs = []
        def before_train(self): self.t0, self.n = time.time(), 0
        def after_batch(self):
            # images, not views: the method callback's count (SwAV's xb[0] holds both large crops of each image)
            if self.training: self.n += len(self.learn.yb[0]) if self.learn.yb and self.learn.yb[0] is not None else len(self.learn.xb[0])
        def after_train(self):
            dt = time.time() - self.t0
            self.epochs.append(dict(epoch=self.epoch, seconds=round(dt, 2), images_per_s=round(self.n / dt, 1),
                                    loss=round(float(self.recorder.smooth_loss.value), 4)))
            print(f"  ours epoch {self.epoch}: {self.epochs[-1]}", flush=True)
    set_seed(seed)
    learn = ssl_learner(pre, entry['ours'], tier, method_kw=entry['ours_kw'])
    if prepare is not None: prepare(learn)
    init_w = learn.model.backbone.conv1.weight.detach().clone()
    timer = Timer()
    learn.fit_one_cycle(tier.epochs, learn.lr, cbs=[timer])
    return dict(backbone=learn.model.backbone, model=learn.model, init_w=init_w, epochs=timer.epochs)


def run_theirs_fresh(name: str, args) -> dict:
    """`run_theirs` in a fresh process with the C library's own malloc settings (`SSL_LEARN_MALLOC=default`), as
    lightly's users run it: importing ssl_learn tunes glibc's malloc for the whole process (`ssl_learn.core.tune_malloc`),
    which lightly's side would otherwise share. Returns what `run_theirs` does, the backbone rebuilt from its weights."""
    import os, subprocess, tempfile
    with tempfile.TemporaryDirectory() as d:
        f = Path(d)/'theirs.pt'
        cmd = [sys.executable, '-m', 'experiments.compare_lightly', '--theirs-only', str(f), '--methods', name,
               '--epochs', str(args.epochs), '--bs', str(args.bs), '--workers', str(args.workers), '--seed', str(args.seed)]
        if args.n_train: cmd += ['--n-train', str(args.n_train)]
        env = {**os.environ, 'SSL_LEARN_MALLOC': 'default'}
        r = subprocess.run(cmd, env=env)
        if r.returncode: raise SystemExit(f"lightly's side of {name} failed in its own process (exit {r.returncode})")
        res = torch.load(f, weights_only=False)
    tier = get_tier('cpu', epochs=args.epochs, bs=args.bs, n_train=args.n_train)
    backbone = make_backbone(tier, prepare_data('fmnist', tier, seed=args.seed)[0])
    backbone.load_state_dict(res.pop('backbone_state'))
    return dict(res, backbone=backbone)


def _theirs_only(name: str, args):
    "The child of `run_theirs_fresh`: lightly's side alone, its result (weights, epochs, settings) saved to a file."
    import ssl_learn.core
    entry = METHODS[name]
    tier = get_tier('cpu', epochs=args.epochs, bs=args.bs, n_train=args.n_train)
    pre = prepare_data('fmnist', tier, seed=args.seed)[0]
    set_seed(args.seed)
    ref = ssl_learner(pre, entry['ours'], tier, method_kw=entry['ours_kw']).model    # the method's settings only
    r = run_theirs(entry, pre, tier, ref, args.seed, args.workers)
    r['backbone_state'] = r.pop('backbone').state_dict()
    r['malloc_tuned'] = ssl_learn.core.malloc_tuned
    torch.save(r, args.theirs_only)


def _mean_rate(epochs): return round(sum(e['images_per_s'] * e['seconds'] for e in epochs) / sum(e['seconds'] for e in epochs), 1)


def compare(name: str, args) -> dict:
    entry = METHODS[name]
    tier = get_tier('cpu', epochs=args.epochs, bs=args.bs, n_train=args.n_train)
    pre = prepare_data('fmnist', tier, seed=args.seed)[0]
    trn, tst = get_data('fmnist')
    if args.n_eval: trn, tst = trn.subset(args.n_eval, seed=0), tst.subset(args.n_eval // 5, seed=0)
    print(f"{name}: {len(pre)} images × {tier.epochs} epochs, batch {tier.bs}", flush=True)
    t = time.time(); ours = run_ours(entry, pre, tier, args.seed); ours['wall'] = time.time() - t
    t = time.time()
    if args.theirs_malloc == 'default': theirs = run_theirs_fresh(name, args)
    else:
        import ssl_learn.core
        theirs = run_theirs(entry, pre, tier, ours['model'], args.seed, args.workers)
        theirs['malloc_tuned'] = ssl_learn.core.malloc_tuned
    theirs['wall'] = time.time() - t
    same_init = bool(torch.equal(ours['init_w'].cpu(), theirs['init_w'].cpu()))
    ks = tuple(int(k) for k in args.ks.split(','))
    knn = {}
    for side, r in (('ours', ours), ('theirs', theirs)):
        rows = knn_eval(r['backbone'], trn, tst, ks=ks)
        knn[side] = {r2['k']: r2['value'] for r2 in rows}
        print(f"  {side} kNN: {knn[side]}", flush=True)
    res = dict(method=name, data='fmnist', tier='cpu', seed=args.seed, n_pretrain=len(pre), epochs=tier.epochs, bs=tier.bs,
               ours=dict(images_per_s=_mean_rate(ours['epochs']), per_epoch=ours['epochs'], knn_top1=knn['ours'],
                         implementation=f"ssl_learn {entry['ours']} {entry['ours_kw']}: batched views on the device, fastai Learner"),
               theirs=dict(images_per_s=_mean_rate(theirs['epochs']), per_epoch=theirs['epochs'], knn_top1=knn['theirs'],
                           implementation=f"lightly {__import__('lightly').__version__}", **theirs['settings'], dataloader_workers=args.workers,
                           malloc_tuned=theirs['malloc_tuned']),
               settings=dict(backbone=ours['backbone'].config, same_initial_weights=same_init, lr=tier.lr, wd=tier.wd,
                             optimizer='SGD momentum 0.9 (one-cycle 0.95-0.85-0.95), decoupled wd, none on BN/bias', schedule='fastai one-cycle',
                             knn=dict(train=len(trn), test=len(tst), ks=list(ks), T=0.07), threads=torch.get_num_threads(),
                             images_per_s='training loop only (data loading and augmentation included), images (not views) per second, mean over epochs'))
    res['ratios'] = dict(images_per_s=round(res['ours']['images_per_s'] / res['theirs']['images_per_s'], 3),
                         **{f'knn{k}': round(knn['ours'][k] / knn['theirs'][k], 4) for k in ks})
    res['targets'] = dict(images_per_s_ratio_at_least=1.3, knn_at_least_theirs=all(knn['ours'][k] >= knn['theirs'][k] for k in ks))
    res.update(provenance())
    return res


def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.compare_lightly', description=__doc__.split('\n')[0])
    ap.add_argument('--methods', default='moco_v2,simclr', help=f"comma-separated, from {sorted(METHODS)}")
    ap.add_argument('--epochs', type=int, default=3); ap.add_argument('--bs', type=int, default=256)
    ap.add_argument('--workers', type=int, default=2, help='DataLoader workers on lightly\'s side')
    ap.add_argument('--ks', default='20,200'); ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--n-train', type=int, default=None, help='pre-training images (default: the cpu tier\'s); for smoke tests')
    ap.add_argument('--n-eval', type=int, default=None, help='kNN memory size (test: a fifth); default the full 60k/10k; for smoke tests')
    ap.add_argument('--out', default='results/comparisons/lightly', help='results root: files go to OUT/<method>/seed<N>.json')
    ap.add_argument('--lock', default='/tmp/ssl_cpu.lock')
    ap.add_argument('--theirs-malloc', default='default', choices=('default', 'tuned'),
                    help="lightly's side in a fresh process with glibc's own malloc settings, as its users run it "
                         "(default), or in this process, sharing ssl_learn's malloc tuning (tuned)")
    ap.add_argument('--theirs-only', default=None, help=argparse.SUPPRESS)    # the child of run_theirs_fresh
    args = ap.parse_args()
    names = [m.strip() for m in args.methods.split(',') if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad: sys.exit(f"unknown method(s) {bad}; available: {sorted(METHODS)}")
    if args.theirs_only: return _theirs_only(names[0], args)     # already under the parent's lock
    with open(args.lock, 'w') as lk:
        t = time.time(); fcntl.flock(lk, fcntl.LOCK_EX); print(f"lock taken after {time.time() - t:.0f} s", flush=True)
        for m in names:
            res = compare(m, args)
            f = atomic_save(res, Path(args.out)/m/f'seed{args.seed}.json')
            print(f"{m}: ratios ours/theirs {res['ratios']} -> {f}", flush=True)


if __name__ == '__main__':
    main()
