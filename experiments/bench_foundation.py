"""Foundation benchmarks (issue 2), written to results/foundation/foundation.json with provenance.

1. batched views vs a per-image torchvision loop (same batch, same augmentations), 1- and 3-channel images;
2. the Rotation-Pred training step vs a plain supervised step of the same backbone on the same images
   (views per second through the same fastai loop);
3. peak memory of cpu-tier training with the cpu-tier backbone (width 32) and with torchvision's full-width
   ResNet-18, batch 256 images (1024 rotated views), each in a fresh process.

Usage (from the repository root): python -m experiments.bench_foundation [--quick]   (`make bench` runs it)
"""
import argparse, json, math, subprocess, sys, time
from pathlib import Path
import torch, torch.nn.functional as F

from ssl_learn.core import atomic_save, provenance, set_seed, get_tier
from ssl_learn.data import load_fmnist
from ssl_learn.augment import (view_preset, to_float, Views, RandomResizedCrop, ColorJitter, RandomGrayscale,
                               GaussianBlur, Solarize)
from ssl_learn.learner import ssl_learner, Throughput
from ssl_learn.method import MethodCallback, SSLModel
from ssl_learn.models import make_backbone
from ssl_learn.models import LinearHead


def bench_views(x: torch.Tensor, size: int, reps: int = 3) -> dict:
    "Images/s of the batched 'byol'-like pipeline vs a per-image torchvision v2 loop on the same uint8 batch `x`."
    from torchvision.transforms import v2 as T
    xf = to_float(x)
    per = T.Compose([T.RandomResizedCrop(size, (0.2, 1.0), antialias=False), T.RandomHorizontalFlip(),
                     T.RandomApply([T.ColorJitter(0.4,0.4,0.2 if x.shape[1]==3 else 0,0.1 if x.shape[1]==3 else 0)], p=0.8),
                     T.RandomGrayscale(0.2), T.RandomApply([T.GaussianBlur(2*math.ceil(3*2.0*size/224)+1, (0.1, 2.0*size/224))], p=1.0),
                     T.RandomSolarize(0.5, p=0.2)])
    bat = Views(RandomResizedCrop(size, (0.2, 1.0)), ColorJitter(0.4,0.4,0.2,0.1,p=0.8), RandomGrayscale(0.2),
                GaussianBlur((0.1, 2.0*size/224), p=1.0), Solarize(0.5, 0.2))
    def tm(f):
        f(); ts = []
        for _ in range(reps):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        return min(ts)
    t_loop = tm(lambda: torch.stack([per(im) for im in xf]))
    t_bat = tm(lambda: bat(x))
    return dict(n=len(x), size=size, channels=x.shape[1], loop_img_s=len(x)/t_loop, batched_img_s=len(x)/t_bat,
                speedup=t_loop/t_bat, threads=torch.get_num_threads())


ap = argparse.ArgumentParser(prog='python -m experiments.bench_foundation', description=__doc__.split('\n')[0])
ap.add_argument('--quick', action='store_true'); ap.add_argument('--out', default='results/foundation/foundation.json')
args = ap.parse_args()
res = dict(provenance(), benchmarks={})
trn = load_fmnist('train')

# 1. views
n = 256 if args.quick else 1024
for ch in (1, 3):
    x = trn.x[:n] if ch == 1 else trn.x[:n].expand(-1, 3, -1, -1).contiguous()
    r = bench_views(x, 28, reps=3)
    res['benchmarks'][f'views_{ch}ch'] = r
    print(f"views, {ch} channel(s), {n} images: per-image loop {r['loop_img_s']:.0f} img/s, batched {r['batched_img_s']:.0f} img/s, speed-up {r['speedup']:.1f}x")

# 2. Rotation-Pred step vs supervised step
class SupervisedCB(MethodCallback):
    "Plain supervised step: the same crop+flip views, class labels as targets."
    def __init__(self, views, y): super().__init__(views); self.y = y
    def make_views(self, x, idx, training=True): return (self.views(x),), (self.y[idx.cpu()].to(x.device),)

class Supervised(SSLModel):   # the method contract: MethodCallback asks the model for its layout and on_step
    def __init__(self, backbone, n): super().__init__(); self.backbone, self.head = backbone, LinearHead(backbone.out_dim, n)
    def forward(self, x): return self.head(self.backbone(x))
    def loss(self, p, y): return F.cross_entropy(p, y)

from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.optimizer import SGD
from functools import partial
from ssl_learn.data import ssl_dls

class TrainTimer(Callback):
    "Wall time of the training phase only (no validation)."
    order = 100
    def before_train(self): self.t = time.time()
    def after_train(self): self.seconds = time.time() - self.t

def quiet(learn):
    learn.remove_cbs([c for c in learn.cbs if type(c).__name__ == 'ProgressCallback']); learn.add_cb(TrainTimer()); return learn

tier = get_tier('cpu')
n_img = 1024 if args.quick else 4096
data = trn.subset(n_img * 4, balanced=False)
set_seed(0)
rot = quiet(ssl_learner(data.subset(n_img, balanced=False), 'rotation', 'cpu', device='cpu'))
rot.fit(1, 0.01)
rot_vps = rot.throughput.n_views / rot.train_timer.seconds
r = dict(rotation_views_per_s=rot_vps, rotation_views=rot.throughput.n_views, rotation_bs_images=tier.bs)
for sup_bs in (tier.bs, 4 * tier.bs):   # same source images per step; same samples per step
    set_seed(0)
    bb = make_backbone(tier, data)
    sup_m = Supervised(bb, 10).to(memory_format=torch.channels_last)
    sup = Learner(ssl_dls(data, None, bs=sup_bs, device='cpu'), sup_m, loss_func=sup_m.loss, opt_func=partial(SGD, mom=0.9),
                  cbs=[SupervisedCB(view_preset('basic', 28), data.y)])
    sup.add_cb(Throughput()); quiet(sup)
    sup.fit(1, 0.01)
    ips = sup.throughput.n_views / sup.train_timer.seconds
    r[f'supervised_bs{sup_bs}_images_per_s'] = ips
    r[f'ratio_vs_supervised_bs{sup_bs}'] = rot_vps / ips
    print(f"Rotation-Pred {rot_vps:.0f} views/s (256 images = 1024 views per step) vs supervised {ips:.0f} images/s "
          f"(batch {sup_bs}): ratio {rot_vps/ips:.2f}")
r.update(backbone=bb.config, note='training phase only (no validation), one epoch each, same crop+flip views, SGD, channels-last, CPU')
res['benchmarks']['step_overhead'] = r

# 3. peak memory, fresh processes
code = r'''
import sys, torch, resource
from ssl_learn.core import set_seed
from ssl_learn.data import load_fmnist
from ssl_learn.learner import ssl_learner, Throughput
w = int(sys.argv[1]); set_seed(0)
d = load_fmnist('train').subset(256*6, balanced=False)
l = ssl_learner(d, 'rotation', 'cpu', device='cpu', width=w)
l.remove_cbs([c for c in l.cbs if type(c).__name__ == 'ProgressCallback'])
l.fit(1, 0.01)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
'''
for w in (32, 64):
    out = subprocess.run([sys.executable, '-c', code, str(w)], capture_output=True, text=True, timeout=1200)
    mb = float(out.stdout.strip().splitlines()[-1])
    res['benchmarks'][f'peak_memory_width{w}'] = dict(width=w, bs_images=256, views_per_step=1024, peak_rss_mb=mb)
    print(f"peak memory, ResNet-18 width {w}, batch 256 images (1024 views): {mb:.0f} MB")

atomic_save(res, args.out); print(f"wrote {args.out}")
