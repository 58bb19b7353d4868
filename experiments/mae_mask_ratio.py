"""MAE's mask ratio at the cpu-tier budget: train MAE at several mask ratios (16,384 Fashion-MNIST images, 3 epochs,
batch 256, the cpu tier's ViT-Tiny), record the final reconstruction loss and images/s, and a linear probe on frozen
features (class token and mean of patch tokens) on a subset of the evaluation splits; the random-weight ViT as the floor.
Also saves the reconstructions of the 0.75 model on test images (results/ablations/mae/reconstructions_cpu.png).
Writes results/ablations/mae/mask_ratio_cpu.json. Run from the repository root under the machine-wide lock:

    flock /tmp/ssl_cpu.lock .venv/bin/python -m experiments.mae_mask_ratio [--ratios 0.25,0.5,0.75,0.9]
"""
import argparse, time
from pathlib import Path
import torch
from ssl_learn.core import get_tier, set_seed, atomic_save, provenance, peak_memory_mb
from ssl_learn.learner import ssl_learner
from ssl_learn.data import prepare_data
from ssl_learn.models import make_backbone
from ssl_learn.eval.linear import linear_eval
from ssl_learn.methods.mae import show_reconstructions
from fastai.callback.core import Callback

ap = argparse.ArgumentParser(prog='python -m experiments.mae_mask_ratio', description=__doc__.split('\n')[0])
ap.add_argument('--ratios', default='0.25,0.5,0.75,0.9'); ap.add_argument('--n_eval_train', type=int, default=10000)
ap.add_argument('--n_eval_test', type=int, default=5000); ap.add_argument('--probe_epochs', type=int, default=10)
ap.add_argument('--out', default='results/ablations/mae/mask_ratio_cpu.json')
ap.add_argument('--png', default='results/ablations/mae/reconstructions_cpu.png', help="the 0.75 model's reconstructions")
a = ap.parse_args()

class TrainTime(Callback):
    "Seconds spent in training phases (validation excluded)."
    def before_fit(self): self.secs = 0.
    def before_train(self): self.t = time.time()
    def after_train(self): self.secs += time.time() - self.t

tier = get_tier('cpu', arch='vit_tiny')
pre, _, _, etrn, etst = prepare_data('fmnist', tier)
etrn, etst = etrn.subset(a.n_eval_train, seed=0), etst.subset(a.n_eval_test, seed=0)

def probe(bb):
    out = {}
    for pool in ('cls', 'mean'):
        bb.pool = pool
        out[f'linear_{pool}'] = linear_eval(bb, etrn, etst, epochs=a.probe_epochs, lr=0.1, seeds=(0,))[0]['value']
    bb.pool = 'cls'
    return out

t_all = time.time()
set_seed(0)
res = dict(setting=f"{len(pre)} images x {tier.epochs} epochs, bs {tier.bs}; probe: {a.probe_epochs} epochs on {len(etrn)} train / {len(etst)} test",
           rows=[])
rnd = probe(make_backbone(tier, pre))
res.update(random_linear_cls=rnd['linear_cls'], random_linear_mean=rnd['linear_mean'])
print('random ViT', rnd, flush=True)
for r in [float(v) for v in a.ratios.split(',')]:
    set_seed(0)
    tt = TrainTime()
    learn = ssl_learner(pre, 'mae', tier, method_kw=dict(mask_ratio=r), device='cpu')
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(tier.epochs, learn.lr, cbs=[tt])
    losses = [float(l) for l in learn.recorder.losses]
    bb = learn.model.backbone
    n = learn.model.backbone.grid ** 2
    row = dict(mask_ratio=r, visible=int(n * (1 - r)), final_loss=losses[-1], first_loss=losses[0],
               loss_curve=losses[::8], seconds_train=round(tt.secs, 1), images_per_s=round(len(pre) // tier.bs * tier.bs * tier.epochs / tt.secs, 1),
               **probe(bb))
    print(row | dict(loss_curve='...'), flush=True)
    res['rows'].append(row)
    if abs(r - 0.75) < 1e-9:
        fig = show_reconstructions(learn.model, etst.x[:10], title=f'MAE at the cpu tier (mask ratio 0.75), test images')
        Path(a.png).parent.mkdir(parents=True, exist_ok=True); fig.savefig(a.png, dpi=110)
res.update(seconds=round(time.time() - t_all, 1), peak_memory_mb=round(peak_memory_mb(), 1), **provenance())
atomic_save(res, a.out)
print(f"wrote {a.out} in {res['seconds']:.0f} s")
