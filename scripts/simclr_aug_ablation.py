"""Ablation: where does lightly's SimCLR kNN edge come from? Our SimCLR (fastai Learner, one backbone pass over
both views) trained with one part of the view pipeline swapped at a time; the same data, seeds, schedule and kNN
as scripts/compare_lightly.py (--n-train 8192 --n-eval 20000), so each seed's result pairs with
results/compare_lightly_simclr[_seedN].json.

Variants:
  pil           lightly's own per-image SimCLR view transform (PIL: crop, flip, jitter in random order, blur, uint8
                between ops) producing our views, in the main process: isolates "augmentation code" from "training code"
  jitter_order  our batched pipeline with brightness/contrast/saturation/hue applied in a random order per image
                (torchvision's ColorJitter does; ours applied brightness then contrast)
  perview       our pipeline, but each view through the backbone and head separately (BN statistics per view, as
                lightly's loop; scripts/simclr_perview_bn.py ran seeds 0 and 1 of this)
  pil_perview   lightly's PIL transform and one pass per view together: lightly's whole data flow in our Learner
  contiguous    our pipeline without channels_last (model and views in the default memory format, as lightly's
                side runs): on the CPU, channels_last BatchNorm is less precise (scripts/simclr_checks.py:
                relative error 1.3e-6 vs 3.9e-8 against float64; the backbone's gradients 5.3e-3 vs 2.6e-3)

Usage: python scripts/simclr_aug_ablation.py VARIANT SEEDS [OUT]
       e.g. python scripts/simclr_aug_ablation.py pil 0,1,2,3 results/simclr_aug_ablation.json
Results are added to OUT after every seed (an interrupted run keeps its finished seeds).
"""
import sys, json, time, fcntl
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
import compare_lightly as cl
from ssl_learn.core import get_tier, provenance, atomic_save
from ssl_learn.data import get_data
from ssl_learn.learner import prepare_data
from ssl_learn.eval import knn_eval
import ssl_learn.augment as A
import ssl_learn.methods.simclr as S


class PILViews(torch.nn.Module):
    "lightly's single-view SimCLR transform (adapted to 28-px grey images as in compare_lightly) on each image of a uint8 batch."
    def __init__(self, size):
        super().__init__()
        from lightly.transforms import SimCLRTransform
        self.tf = SimCLRTransform(**cl._grey_transform_kw()).transforms[0]
    def forward(self, x):
        from PIL import Image
        xs = (x.cpu() * 255).round().to(torch.uint8)       # Views hands us [0,1] floats of uint8 images: exact
        return torch.stack([self.tf(Image.fromarray(xs[i, 0].numpy(), mode='L')) for i in range(len(xs))]).to(x.device)


class OrderedJitter(A.ColorJitter):
    "ColorJitter with its operations applied in a random order per image (as torchvision's)."
    def __init__(self, *a, random_order=True, **kw):
        super().__init__(*a, **kw); self.random_order = random_order
    def forward(self, x):
        n, dev = len(x), x.device
        on = A._coin(n, self.p, dev).view(n, 1, 1, 1).to(x.dtype)
        fac = lambda a: 1 + (A._rand(n, -a, a, dev).clamp(min=-1)).view(n, 1, 1, 1) * on
        fb, fc, fs = fac(self.b), fac(self.c), fac(self.s)
        def bright(t, m): return (t * fb[m]).clamp(0, 1)
        def contrast(t, m):
            mu = A._gray(t).mean((1, 2, 3), keepdim=True)
            return ((t - mu) * fc[m] + mu).clamp(0, 1)
        def sat(t, m):
            if t.shape[1] == 1: return t
            g = A._gray(t); return ((t - g) * fs[m] + g).clamp(0, 1)
        ops = [bright, contrast, sat]                       # hue: a no-op on grey images (the ablation's data)
        order = torch.stack([torch.randperm(len(ops), device=dev) for _ in range(n)]) if self.random_order else \
                torch.arange(len(ops), device=dev).expand(n, -1)
        out = x
        for pos in range(len(ops)):
            new = out.clone()
            for j, op in enumerate(ops):
                m = order[:, pos] == j
                if m.any(): new[m] = op(out[m], m)
            out = new
        return out


def random_order_jitter():
    def preset(name, size, scale=None, blur_p=None):
        v = A.view_preset(name, size, scale=scale, blur_p=blur_p)
        crop, jit, *rest = list(v)
        assert isinstance(jit, A.ColorJitter)
        return A.Views(crop, OrderedJitter(jit.b, jit.c, jit.s, jit.h, p=jit.p), *rest)
    return preset


def per_view(self, x1, x2):
    "SimCLR.forward with one backbone (and head) pass per view: BN statistics per view, as lightly's training loop."
    return tuple(self.head(self.backbone(x)).float() for x in (x1, x2))


class _TorchNoChannelsLast:
    "The torch module as ssl_learn.learner sees it, with channels_last meaning the default (contiguous) format."
    def __getattr__(self, k): return torch.contiguous_format if k == 'channels_last' else getattr(torch, k)


def no_channels_last():
    "Our side without channels_last: the model and the views stay in the default contiguous memory format."
    import ssl_learn.learner as L
    L.torch = _TorchNoChannelsLast()


_pil = lambda name, size, scale=None, blur_p=None: A.Views(PILViews(size))
# name -> (the simclr builder's view pipeline, or None for ours; one backbone pass per view?)
VARIANTS = {
    'pil': (_pil, False),
    'jitter_order': (random_order_jitter(), False),
    'perview': (None, True),
    'pil_perview': (_pil, True),
    'contiguous': (None, False),
}
SETUP = {'contiguous': no_channels_last}


def main():
    variant, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(',')]
    out = Path(sys.argv[3] if len(sys.argv) > 3 else 'results/simclr_aug_ablation.json')
    if variant not in VARIANTS: sys.exit(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    preset, pv = VARIANTS[variant]
    if preset is not None: S.view_preset = preset       # the simclr builder's pipeline
    if pv: S.SimCLR.forward = per_view
    if variant in SETUP: SETUP[variant]()
    with open('/tmp/ssl_cpu.lock', 'w') as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        for seed in seeds:
            tier = get_tier('cpu', epochs=3, bs=256, n_train=8192)
            pre = prepare_data('fmnist', tier, seed=seed)[0]
            trn, tst = get_data('fmnist'); trn, tst = trn.subset(20000, seed=0), tst.subset(4000, seed=0)
            t = time.time(); r = cl.run_ours(cl.METHODS['simclr'], pre, tier, seed)
            knn = {x['k']: x['value'] for x in knn_eval(r['backbone'], trn, tst, ks=(20, 200))}
            res = json.loads(out.read_text()) if out.exists() else dict(
                what='our SimCLR with one part of the view pipeline swapped (scripts/simclr_aug_ablation.py); pairs with results/compare_lightly_simclr[_seedN].json',
                results={})
            res['results'].setdefault(variant, {})[str(seed)] = dict(knn_top1=knn, per_epoch=r['epochs'], wall_s=round(time.time() - t, 1), **provenance())
            atomic_save(res, out)
            print(variant, seed, knn, flush=True)


if __name__ == '__main__':
    main()
