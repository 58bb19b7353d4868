"""`torch.compile` (inductor, CPU) on the backbones of a method's cpu-tier training step: compile time, images/s
compiled against eager, and how far the outputs differ.

For each method, in its own process: the cpu-tier learner; every `ssl_learn.models.ResNet` / `ViT` inside the model
(the encoder and, where the method has one, its momentum copy) compiled in place with `nn.Module.compile()` (the
heads, losses, views and per-step updates stay eager). The first compiled window's wall time, minus an eager
window's, is the compile time. Then eager and compiled windows alternate (E C E C …, `--repeats` each, windows of
`--steps` optimiser steps after 2 warm-up steps, as `experiments.throughput.Window`), and the median ratio of each
compiled window to the mean of the eager ones either side is reported. And eager against
compiled, from the same weights: the largest difference in the first network's output on one batch (training mode),
relative to the output's largest value, shows the numerics agree.

Writes results/foundation/compile_cpu.{json,md} with provenance; holds `--lock` for the whole run.

Usage (from the repository root):
  python -m experiments.compile_cpu [--methods supervised,moco_v2,densecl,byol] [--steps 6] [--repeats 3]
"""
import argparse, fcntl, json, time
from pathlib import Path
from experiments.throughput import child

CHILD = r'''
import json, statistics, sys, time, torch
from experiments.throughput import Window, window
from ssl_learn.core import set_seed
from ssl_learn.data import prepare_data
from ssl_learn.learner import ssl_learner
from ssl_learn.method import method_tier
from ssl_learn.models import ResNet
from ssl_learn.vit import ViT
method, steps, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tier = method_tier(method, 'cpu'); set_seed(0)
pre, *_ = prepare_data('fmnist', tier)
learn = ssl_learner(pre, method, tier, device='cpu'); learn.add_cb(Window(steps, 2))
nets = [m for m in learn.model.modules() if isinstance(m, (ResNet, ViT))]

rate = lambda w: w[1] / w[0]
window(learn)                                           # eager: allocation, caches
e0 = window(learn)
for m in nets: m.compile()
compiled = [m._compiled_call_impl for m in nets]
def mode(on):
    for m, c in zip(nets, compiled): m._compiled_call_impl = c if on else None
t = time.perf_counter(); first = window(learn); compile_s = time.perf_counter() - t - e0[0] * first[1] / e0[1]
mode(False); E, C = [window(learn)], []
for _ in range(repeats):
    mode(True); C.append(window(learn)); mode(False); E.append(window(learn))
ratios = [rate(c) / ((rate(a) + rate(b)) / 2) for c, a, b in zip(C, E, E[1:])]
# one batch through the first network both ways, from the same weights (training mode: batch statistics)
x = pre.x[:tier.bs].float() / 255
with torch.no_grad():
    mode(False); ye = nets[0](x).float(); mode(True); yc = nets[0](x).float()
diff = ((yc - ye).abs().max() / ye.abs().max()).item()
print('@@RESULT ' + json.dumps(dict(method=method, n_compiled=len(nets), compile_seconds=round(compile_s, 1),
      eager_images_per_s=round(statistics.median(map(rate, E)), 1),
      compiled_images_per_s=round(statistics.median(map(rate, C)), 1),
      ratio=round(statistics.median(ratios), 3), max_rel_diff=diff, ratios=[round(r, 3) for r in ratios],
      steps=steps, repeats=repeats,
      threads=torch.get_num_threads())))
'''

def table(res) -> str:
    lines = ['| method | networks compiled | compile s | eager images/s | compiled images/s | compiled / eager (median, range) '
             '| output difference (relative) |', '|---|---|---|---|---|---|---|']
    for m, r in res['rows'].items():
        lines.append(f"| {m} | {r['n_compiled']} | {r['compile_seconds']:.0f} | {r['eager_images_per_s']:.0f} | "
                     f"{r['compiled_images_per_s']:.0f} | {r['ratio']:.3f} ({min(r['ratios']):.3f}–{max(r['ratios']):.3f}) | "
                     f"{r['max_rel_diff']:.1e} |")
    for m, e in res['failed'].items(): lines.append(f"| {m} | failed: {e} | | | | | |")
    return '\n'.join(lines)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(prog='python -m experiments.compile_cpu', description=__doc__.split('\n')[0])
    ap.add_argument('--methods', default='supervised,moco_v2,densecl,byol')
    ap.add_argument('--steps', type=int, default=6); ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--out', default='results/foundation/compile_cpu.json')
    ap.add_argument('--lock', default='/tmp/ssl_cpu.lock')
    a = ap.parse_args()
    from ssl_learn.core import provenance
    out = Path(a.out); res = dict(settings=dict(tier='cpu', steps=a.steps, repeats=a.repeats), rows={}, failed={})
    t0 = time.time()
    with open(a.lock, 'w') as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        for m in a.methods.split(','):
            row, err = child(CHILD, m, a.steps, a.repeats)
            if err: res['failed'][m] = err; print(f"FAILED {m}: {err}", flush=True)
            else: res['rows'][m] = row; print(json.dumps(row), flush=True)
            res.update(seconds=round(time.time() - t0, 1), **provenance())
            out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=2, default=str))
    out.with_suffix('.md').write_text(table(res) + '\n')
    print(table(res))
