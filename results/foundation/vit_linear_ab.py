"""The ViT methods' training steps at the cpu tier with their linear layers through oneDNN (core.linear, the
library's) and through the BLAS (F.linear), in one process per run, windows of steps alternating A B B A ..., each
side's median images/s and the ratio of the medians. Writes results/foundation/vit_linear_ab_cpu.txt.

Run from the repository root: python results/foundation/vit_linear_ab.py [methods] [windows per side]
  methods: comma-separated, name or name:arch (default supervised:vit_tiny,mae,moco_v3)"""
import sys, statistics, torch
from pathlib import Path
from unittest import mock
import ssl_learn.core as core
from ssl_learn.core import set_seed, provenance
from ssl_learn.data import prepare_data
from ssl_learn.learner import ssl_learner
from ssl_learn.method import method_tier
from experiments.throughput import Window, window

methods = (sys.argv[1] if len(sys.argv) > 1 else 'supervised:vit_tiny,mae,moco_v3').split(',')
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
def blas(x, w, b=None): return torch.nn.functional.linear(x, w, b)
lines = []
for m in methods:
    name, _, arch = m.partition(':')
    tier = method_tier(name, 'cpu', arch=arch or None); set_seed(0)
    pre, *_ = prepare_data('fmnist', tier)
    learn = ssl_learner(pre, name, tier, device='cpu'); learn.add_cb(Window(6, 2, count_flops=False))
    with mock.patch.object(core, 'linear', blas): window(learn)     # a first window of each route: allocation
    window(learn)
    res = {'onednn': [], 'blas': []}
    for r in range(reps):
        for k in (['onednn', 'blas'] if r % 2 == 0 else ['blas', 'onednn']):
            with mock.patch.object(core, 'linear', blas if k == 'blas' else core.linear): dt, n, _ = window(learn)
            res[k].append(n / dt)
    med = {k: round(statistics.median(v), 1) for k, v in res.items()}
    lines.append(f"{m}: images/s median {med} -> oneDNN/BLAS {med['onednn'] / med['blas']:.3f}; windows "
                 f"{ {k: [round(x) for x in v] for k, v in res.items()} }")
    print(lines[-1], flush=True)
p = provenance()
head = (f"# python results/foundation/vit_linear_ab.py {' '.join(sys.argv[1:])}\n# commit {p['commit']}, "
        f"{p['machine']['cpu']}, {torch.get_num_threads()} threads, {p['time']}; 6 timed steps per window after 2\n")
Path('results/foundation/vit_linear_ab_cpu.txt').write_text(head + '\n'.join(lines) + '\n')
