"""Training throughput and peak memory of every method at a tier, on a quiet machine: each method in a fresh
process (so the peak RSS is its own), a cpu-tier learner on the tier's pre-training images, a few warm-up steps,
then `--steps` timed optimizer steps. Accuracy runs (`ssl_learn bench`) may share the CPU with other work;
this script is where the images/s and memory figures in the README come from. Takes the CPU lock.

Usage (from the repository root):
  python -m experiments.bench_throughput [--tier cpu] [--steps 12] [--warmup 3] [--methods all|a,b] [--out results/foundation/throughput_cpu.json]
"""
import argparse, fcntl, json, subprocess, sys, time
from pathlib import Path

CHILD = r'''
import json, sys, time, torch
from fastai.callback.core import Callback, CancelFitException
from ssl_learn.core import get_tier, set_seed, peak_memory_mb
from ssl_learn.learner import ssl_learner
from ssl_learn.data import prepare_data
method, tier, steps, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
set_seed(0)
pre, *_ = prepare_data('fmnist', tier)
learn = ssl_learner(pre, method, tier)
class Timer(Callback):
    order = 100
    def before_fit(self): self.i, self.t0, self.n_img, self.n_views = 0, None, 0, 0
    def after_step(self):
        self.i += 1
        if self.i == warmup: self.t0 = time.perf_counter(); self.v0 = (learn.throughput.n_images, learn.throughput.n_views)
        if self.i == warmup + steps:
            self.dt = time.perf_counter() - self.t0
            self.n_img, self.n_views = learn.throughput.n_images - self.v0[0], learn.throughput.n_views - self.v0[1]
            raise CancelFitException
t = Timer(); learn.add_cb(t)
t_all = time.perf_counter()
with learn.no_bar(), learn.no_logging(): learn.fit(1, learn.lr)
arch = learn.model.backbone.config if hasattr(learn.model.backbone, 'config') else {}
print('\n@@RESULT ' + json.dumps(dict(method=method, tier=tier, steps=steps, warmup=warmup, bs=learn.dls.train.bs, arch=arch,
    seconds=round(t.dt, 2), images_per_s=round(t.n_img / t.dt, 1), views_per_s=round(t.n_views / t.dt, 1),
    peak_memory_mb=round(peak_memory_mb(), 1), threads=torch.get_num_threads())))
'''

if __name__ == '__main__':
    ap = argparse.ArgumentParser(prog='python -m experiments.bench_throughput', description=__doc__.split('\n')[0])
    ap.add_argument('--tier', default='cpu'); ap.add_argument('--steps', type=int, default=12); ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--methods', default='all'); ap.add_argument('--out', default=None, help='default: results/foundation/throughput_<tier>.json'); ap.add_argument('--lock', default='/tmp/ssl_cpu.lock')
    a = ap.parse_args()
    from ssl_learn.method import list_methods
    from ssl_learn.core import provenance
    methods = list_methods() if a.methods == 'all' else a.methods.split(',')
    out = Path(a.out or f'results/foundation/throughput_{a.tier}.json')
    res = json.loads(out.read_text()) if out.exists() else {}
    rows = res.get('rows', {})
    with open(a.lock, 'w') as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        for m in methods:
            r = subprocess.run([sys.executable, '-c', CHILD, m, a.tier, str(a.steps), str(a.warmup)], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAILED {m}: {(r.stderr.strip().splitlines() or ['?'])[-1]}", flush=True); continue
            row = json.loads([l for l in r.stdout.splitlines() if l.startswith('@@RESULT ')][-1][9:]); rows[m] = row
            print(f"{m:14s} {row['images_per_s']:8.1f} img/s {row['views_per_s']:8.1f} views/s  peak {row['peak_memory_mb']:.0f} MB", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(dict(rows=rows, **provenance()), indent=2, default=str))
