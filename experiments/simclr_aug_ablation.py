"""Ablation: where does lightly's SimCLR kNN edge come from? Our SimCLR (fastai Learner, one backbone pass over
both views) trained with one part of the view pipeline swapped at a time; the same data, seeds, schedule and kNN
as experiments/compare_lightly.py (--n-train 8192 --n-eval 20000), so each seed's result pairs with
results/comparisons/lightly/simclr/seed<N>.json.

Variants:
  pil           lightly's own per-image SimCLR view transform (PIL: crop, flip, jitter in random order, blur, uint8
                between ops) producing our views, in the main process: isolates "augmentation code" from "training code"
  jitter_order  our batched pipeline with brightness/contrast/saturation/hue applied in a random order per image
                (torchvision's ColorJitter does; ours applied brightness then contrast)
  perview       our pipeline, but each view through the backbone and head separately (BN statistics per view, as
                lightly's loop; results/ablations/simclr/perview_bn.json holds seeds 0 and 1 of this, from an
                earlier one-off script)
  pil_perview   lightly's PIL transform and one pass per view together: lightly's whole data flow in our Learner
  contiguous    our pipeline without channels_last (model and views in the default memory format, as lightly's
                side runs): on the CPU, channels_last BatchNorm is less precise (experiments/simclr_checks.py:
                relative error 1.3e-6 vs 3.9e-8 against float64; the backbone's gradients 5.3e-3 vs 2.6e-3)

The variants are built here, not patched into the library: the view-pipeline and per-view variants are SimCLR
builders registered under their own method name (`simclr_<variant>`, through `ssl_learn.method.register_method`);
`contiguous` converts the learner back to the default memory format before training (`run_ours(prepare=...)`).

Usage (from the repository root): python -m experiments.simclr_aug_ablation VARIANT SEEDS [OUT]
       e.g. python -m experiments.simclr_aug_ablation pil 0,1,2,3          (OUT: results/ablations/simclr/aug.json)
Results are added to OUT after every seed (an interrupted run keeps its finished seeds).
"""
import argparse, json, time, fcntl
from pathlib import Path
import torch
from fastai.callback.core import Callback
from experiments import compare_lightly as cl
from ssl_learn.core import get_tier, provenance, atomic_save
from ssl_learn.method import register_method
from ssl_learn.data import get_data
from ssl_learn.data import prepare_data
from ssl_learn.method import TwoViewCallback
from ssl_learn.eval.knn import knn_eval
from ssl_learn.methods.simclr import SimCLR
import ssl_learn.augment as A


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


class PerViewSimCLR(SimCLR):
    "SimCLR with one backbone (and head) pass per view: BN statistics per view, as lightly's training loop."
    def forward(self, x1, x2): return tuple(self.head(self.backbone(x)).float() for x in (x1, x2))


def simclr_variant(preset=None, per_view: bool = False):
    """A SimCLR builder with ssl_learn.methods.simclr.simclr's signature and construction order (model, then views):
    the views from `preset(name, size, scale=, blur_p=)` instead of `ssl_learn.augment.view_preset`, and
    `PerViewSimCLR` instead of `SimCLR` if `per_view`."""
    def build(backbone, size: int, tier=None, data=None, dim: int = 128, hidden=None, T: float = 0.1, crop_scale=None):
        model = (PerViewSimCLR if per_view else SimCLR)(backbone, dim, hidden, T)
        return model, TwoViewCallback((preset or A.view_preset)('simclr', size, scale=crop_scale))
    return build


class _Contiguous(Callback):
    "Runs after the method callback (order -5), which puts the views in channels_last: back to the default format."
    order = -4
    def before_batch(self): self.learn.xb = tuple(t.contiguous() if t.ndim == 4 else t for t in self.xb)


def no_channels_last(learn):
    "Our side without channels_last: the model and the views in the default contiguous memory format (before training)."
    learn.model.to(memory_format=torch.contiguous_format)
    learn.add_cb(_Contiguous())


_pil = lambda name, size, scale=None, blur_p=None: A.Views(PILViews(size))
# name -> the variant's SimCLR builder pieces (`preset`: its view pipeline, None for ours; `per_view`: one backbone
# pass per view) and `prepare`, a change to the learner before training
VARIANTS = {
    'pil': dict(preset=_pil),
    'jitter_order': dict(preset=random_order_jitter()),
    'perview': dict(per_view=True),
    'pil_perview': dict(preset=_pil, per_view=True),
    'contiguous': dict(prepare=no_channels_last),
}


def variant_entry(variant: str) -> dict:
    "compare_lightly's METHODS['simclr'] entry for `variant`; registers the variant's builder as method `simclr_<variant>` when it has one."
    v = VARIANTS[variant]
    if 'preset' not in v and 'per_view' not in v: return cl.METHODS['simclr']
    name = f'simclr_{variant}'
    register_method(name, f'SimCLR, ablation variant {variant!r} (experiments/simclr_aug_ablation.py)')(
        simclr_variant(v.get('preset'), v.get('per_view', False)))
    return dict(cl.METHODS['simclr'], ours=name)


def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.simclr_aug_ablation', description=__doc__.split('\n')[0])
    ap.add_argument('variant', choices=sorted(VARIANTS)); ap.add_argument('seeds', help='comma-separated, e.g. 0,1,2,3')
    ap.add_argument('out', nargs='?', default='results/ablations/simclr/aug.json')
    args = ap.parse_args()
    variant, seeds, out = args.variant, [int(s) for s in args.seeds.split(',')], Path(args.out)
    entry, prepare = variant_entry(variant), VARIANTS[variant].get('prepare')
    with open('/tmp/ssl_cpu.lock', 'w') as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        for seed in seeds:
            tier = get_tier('cpu', epochs=3, bs=256, n_train=8192)
            pre = prepare_data('fmnist', tier, seed=seed)[0]
            trn, tst = get_data('fmnist'); trn, tst = trn.subset(20000, seed=0), tst.subset(4000, seed=0)
            t = time.time(); r = cl.run_ours(entry, pre, tier, seed, prepare=prepare)
            knn = {x['k']: x['value'] for x in knn_eval(r['backbone'], trn, tst, ks=(20, 200))}
            res = json.loads(out.read_text()) if out.exists() else dict(
                what='our SimCLR with one part of the view pipeline swapped (experiments/simclr_aug_ablation.py); pairs with results/comparisons/lightly/simclr/seed<N>.json',
                results={})
            res['results'].setdefault(variant, {})[str(seed)] = dict(knn_top1=knn, per_epoch=r['epochs'], wall_s=round(time.time() - t, 1), **provenance())
            atomic_save(res, out)
            print(variant, seed, knn, flush=True)


if __name__ == '__main__':
    main()
