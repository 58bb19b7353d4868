"""Every evaluation protocol for each backbone at a tier, one process per (backbone, protocol) so that each
protocol's peak memory is its own; writes results/eval_<tier>/<name>_<protocol>.json and a markdown table.
Finished pairs are skipped (delete a file to redo it), so an interrupted run picks up where it stopped; a failing
pair is reported and the others still run.

Usage: python scripts/bench_protocols.py [--tier cpu] [--protocols knn,linear,...] NAME=SPEC ...
  e.g. random=random pixels=pixels supervised=runs/supervised_cpu/backbone.pth rotation=runs/demo/backbone.pth
"""
import argparse, json, subprocess, sys, time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument('specs', nargs='+'); ap.add_argument('--tier', default='cpu'); ap.add_argument('--data', default='fmnist')
ap.add_argument('--protocols', default='knn,linear,mhead,svm,lowshot,semi'); ap.add_argument('--out', default=None)
a = ap.parse_args()
out = Path(a.out or f'results/eval_{a.tier}'); out.mkdir(parents=True, exist_ok=True)
bin_ = Path(sys.executable).parent/'ssl_learn'
specs = [s.split('=', 1) for s in a.specs]
for p in a.protocols.split(','):          # protocol-major: an interrupted run still has whole columns
    for name, path in specs:
        if name == 'pixels' and p not in ('knn', 'linear'): continue
        f = out/f'{name}_{p}.json'
        if f.exists(): print(f"skip {f} (done)"); continue
        t = time.time()
        r = subprocess.run([str(bin_), 'eval', path, '--protocol', p, '--tier', a.tier, '--data', a.data, '--out', str(f)],
                           capture_output=True, text=True)
        dt = time.time() - t
        if r.returncode != 0: print(f"FAILED {name} {p} ({dt:.0f} s): {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"); continue
        d = json.loads(f.read_text()); d['wall_seconds'] = round(dt, 1); d['name'] = name; f.write_text(json.dumps(d, indent=2, default=str))
        print(f"{name:12s} {p:8s} {dt:7.1f} s  peak {d['rows'][0].get('peak_memory_mb', 0):.0f} MB")
