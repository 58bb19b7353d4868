"""What `ssl_learn.core.tune_malloc` changes in a training step on CPU: images/s, minor page faults per step and the
process's peak resident memory, with glibc's malloc tuned (the default since it landed) and with
`SSL_LEARN_MALLOC=default` (the C library's own thresholds), for each method asked for.

Each measurement is a fresh process: the method's cpu-tier learner, one untimed window of `--steps` steps (after 2
warm-up steps), then a timed window of the same length; `getrusage`'s minor page faults are counted over that second
fit's `--steps` + 2 steps and divided by their number. The
two settings alternate (tuned, default, tuned, default, …) for `--rounds` rounds, so that a machine whose speed drifts
moves both alike; the medians are reported, and the ratio tuned/default of images/s pair by pair (median).

Writes results/foundation/malloc_tuning.{json,md} with provenance; `--lock` holds the machine-wide CPU lock.

Usage (from the repository root):
  python -m experiments.malloc_tuning [--methods supervised,densecl,byol,simclr] [--steps 10] [--rounds 5]
"""
import argparse, fcntl, json, os, statistics, time
from pathlib import Path
from experiments.throughput import child

CHILD = r'''
import json, resource, sys
from experiments.throughput import Window, window
from ssl_learn.core import set_seed, malloc_tuned
from ssl_learn.data import prepare_data
from ssl_learn.learner import ssl_learner
from ssl_learn.method import method_tier
method, steps = sys.argv[1], int(sys.argv[2])
tier = method_tier(method, 'cpu'); set_seed(0)
pre, *_ = prepare_data('fmnist', tier)
learn = ssl_learner(pre, method, tier, device='cpu'); learn.add_cb(Window(steps, 2))
window(learn)                                          # allocation, caches
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
dt, n, v = window(learn)
f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print('@@RESULT ' + json.dumps(dict(tuned=malloc_tuned, images_per_s=n / dt, faults_per_step=(f1 - f0) / (steps + 2),
      peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
'''

def run(method, steps, tuned):
    env = dict(os.environ)
    env.pop('SSL_LEARN_MALLOC', None)
    if not tuned: env['SSL_LEARN_MALLOC'] = 'default'
    res, err = child(CHILD, method, steps, env=env)
    if err: raise SystemExit(f"{method}: {err}")
    if res['tuned'] != tuned: raise SystemExit(f"{method}: asked for tuned={tuned}, the child had {res['tuned']}")
    return res

def table(res) -> str:
    lines = ['| method | images/s, tuned | images/s, default | tuned / default (median of pairs) | page faults per step, '
             'tuned | page faults per step, default | peak MB, tuned | peak MB, default |', '|---|---|---|---|---|---|---|---|']
    for m, r in res['rows'].items():
        t, d = r['tuned'], r['default']
        lines.append(f"| {m} | {t['images_per_s']:.0f} | {d['images_per_s']:.0f} | {r['ratio']:.3f} "
                     f"({min(r['ratios']):.3f}–{max(r['ratios']):.3f}) | {t['faults_per_step']:.0f} | "
                     f"{d['faults_per_step']:.0f} | {t['peak_mb']:.0f} | {d['peak_mb']:.0f} |")
    return '\n'.join(lines)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(prog='python -m experiments.malloc_tuning', description=__doc__.split('\n')[0])
    ap.add_argument('--methods', default='supervised,densecl,byol,simclr')
    ap.add_argument('--steps', type=int, default=10); ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--out', default='results/foundation/malloc_tuning.json')
    ap.add_argument('--lock', default='/tmp/ssl_cpu.lock')
    a = ap.parse_args()
    if min(a.steps, a.rounds) < 1: ap.error('--steps and --rounds must be at least 1')
    from ssl_learn.core import provenance
    out, med = Path(a.out), statistics.median
    res = dict(settings=dict(steps=a.steps, rounds=a.rounds, tier='cpu'), rows={})
    t0 = time.time()
    with open(a.lock, 'w') as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        for m in a.methods.split(','):
            pairs = []
            for i in range(a.rounds):
                pairs.append((run(m, a.steps, True), run(m, a.steps, False)))
                print(f"{m} round {i}: tuned {pairs[-1][0]['images_per_s']:.0f} img/s "
                      f"({pairs[-1][0]['faults_per_step']:.0f} faults/step), default {pairs[-1][1]['images_per_s']:.0f} "
                      f"img/s ({pairs[-1][1]['faults_per_step']:.0f} faults/step)", flush=True)
            side = lambda j: {k: round(med(p[j][k] for p in pairs), 1) for k in ('images_per_s', 'faults_per_step', 'peak_mb')}
            ratios = [p[0]['images_per_s'] / p[1]['images_per_s'] for p in pairs]
            res['rows'][m] = dict(tuned=side(0), default=side(1), ratio=round(med(ratios), 3),
                                  ratios=[round(r, 3) for r in ratios],
                                  all=[[p[0]['images_per_s'], p[1]['images_per_s']] for p in pairs])
            res.update(seconds=round(time.time() - t0, 1), **provenance())
            out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=2, default=str))
    out.with_suffix('.md').write_text(table(res) + '\n')
    print(table(res))
