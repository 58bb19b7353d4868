"""Measure one or more methods at a tier the same way: pre-train with `ssl_learn train` (resumable, into
runs/<method>_<tier>/), copy its summary to results/<method>_<tier>_train.json, then run the evaluation protocols
with scripts/bench_protocols.py (one process each, results/eval_<tier>/<method>_<protocol>.json, finished ones
skipped). Every long step takes the machine-wide lock /tmp/ssl_cpu.lock, so measurements never overlap.

Usage: python scripts/bench_method.py [--tier cpu] [--protocols knn,linear,lowshot] METHOD [METHOD ...]
"""
import argparse, fcntl, json, shutil, subprocess, sys, time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument('methods', nargs='+'); ap.add_argument('--tier', default='cpu'); ap.add_argument('--data', default='fmnist')
ap.add_argument('--protocols', default='knn,linear,lowshot'); ap.add_argument('--lock', default='/tmp/ssl_cpu.lock')
a = ap.parse_args()
bin_ = Path(sys.executable).parent
with open(a.lock, 'w') as lk:
    t = time.time(); fcntl.flock(lk, fcntl.LOCK_EX); print(f"lock taken after {time.time() - t:.0f} s", flush=True)
    for m in a.methods:
        out = Path(f'runs/{m}_{a.tier}')
        t = time.time()
        r = subprocess.run([str(bin_/'ssl_learn'), 'train', m, '--tier', a.tier, '--data', a.data, '--out', str(out)])
        if r.returncode != 0: print(f"FAILED training {m} (exit {r.returncode})", flush=True); continue
        print(f"{m}: trained in {time.time() - t:.0f} s", flush=True)
        Path('results').mkdir(exist_ok=True)
        shutil.copy(out/'train.json', f'results/{m}_{a.tier}_train.json')
        subprocess.run([str(bin_/'python'), 'scripts/bench_protocols.py', '--tier', a.tier, '--data', a.data,
                        '--protocols', a.protocols, f'{m}={out}/backbone.pth'])
