"""The training monitor in bfloat16: for each kept zoo backbone, the held-out weighted-kNN monitor (k=20, the zoo
tier's 4,096 bank and 1,024 query images) computed with float32 and with bfloat16 forward passes, and the seconds of
each (alternating, `--repeats` times, medians).

Why it matters: on 2 cores the monitor is most of an epoch's time outside the training steps; `KNNMonitor` runs in
bf16 (`precision='auto'`) where the CPU computes it in hardware, if the accuracy it reports holds.

Usage (from the repository root):
  python -m experiments.monitor_bf16 [--methods supervised,simclr,...] [--repeats 3] [--threads N]
                                     [--out results/foundation/monitor_bf16.json]
Writes the JSON (every figure, provenance) and a Markdown table beside it.
"""
import argparse, json, statistics, time
from pathlib import Path

def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.monitor_bf16', description=__doc__.split('\n')[0])
    ap.add_argument('--methods', default='all'); ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    ap.add_argument('--backbones', default='results/bench/fmnist/zoo/backbones')
    ap.add_argument('--out', default='results/foundation/monitor_bf16.json')
    a = ap.parse_args()
    import torch
    from ssl_learn.core import bf16_supported, provenance
    from ssl_learn.data import prepare_data
    from ssl_learn.models import load_backbone
    from ssl_learn.learner import KNNMonitor
    if a.threads: torch.set_num_threads(a.threads)
    if not bf16_supported(): raise SystemExit('this CPU has no bfloat16 hardware: nothing to compare')
    paths = sorted(Path(a.backbones).glob('*.pth'))
    if a.methods != 'all': paths = [p for p in paths if p.stem in a.methods.split(',')]
    if not paths: raise SystemExit(f'no backbones in {a.backbones} for --methods {a.methods}')
    _, bank, query, _, _ = prepare_data('fmnist', 'zoo')
    mons = {p: KNNMonitor(bank, query, precision=p) for p in ('fp32', 'bf16')}
    rows, t0 = {}, time.time()
    for path in paths:
        bb = load_backbone(path).float()
        acc, secs = {}, {p: [] for p in mons}
        for r in range(a.repeats):
            for p in (mons if r % 2 == 0 else list(mons)[::-1]):
                t = time.perf_counter(); acc[p] = round(mons[p].score(bb), 2); secs[p].append(time.perf_counter() - t)
        rows[path.stem] = dict(knn20=acc, seconds={p: round(statistics.median(s), 3) for p, s in secs.items()},
                               speedup=round(statistics.median(secs['fp32']) / statistics.median(secs['bf16']), 2),
                               config=getattr(bb, 'config', None))
        print(path.stem, rows[path.stem]['knn20'], rows[path.stem]['seconds'], flush=True)
    res = dict(settings=dict(tier='zoo', bank=len(bank), query=len(query), k=20, repeats=a.repeats,
                             threads=torch.get_num_threads(), backbones=a.backbones),
               rows=rows, seconds=round(time.time() - t0, 1), **provenance())
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    lines = ['| backbone | kNN20 fp32 | kNN20 bf16 | difference | seconds fp32 | seconds bf16 | speed-up |',
             '|---|---|---|---|---|---|---|']
    for m, r in rows.items():
        k, s = r['knn20'], r['seconds']
        lines.append(f"| {m} | {k['fp32']:.2f} | {k['bf16']:.2f} | {k['bf16'] - k['fp32']:+.2f} | {s['fp32']:.2f} | "
                     f"{s['bf16']:.2f} | {r['speedup']:.2f}× |")
    diffs = [abs(r['knn20']['bf16'] - r['knn20']['fp32']) for r in rows.values()]
    lines += ['', f"{len(rows)} backbones; largest difference {max(diffs):.2f} points over {len(query)} queries "
              f"(one query is {100 / len(query):.2f}); {torch.get_num_threads()} thread(s); commit {res.get('commit')}; "
              f"{res.get('time')}."]
    out.with_suffix('.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))

if __name__ == '__main__': main()
