"""OpenMP's wait policy on a shared machine: wall time of a fixed training loop (25 supervised steps of the zoo tier's
ResNet-18, width 16, batch 256, 2 threads) in a fresh process under OMP_WAIT_POLICY unset (the runtime's default,
threads spin while waiting), ACTIVE and PASSIVE, in alternating rounds, with and without a competing process (the same
loop, 2 threads, running throughout; it stands for a benchmark or a test run beside the job).

Why it matters: on 2 cores the policy decides how much two jobs slow each other (see ssl_learn/__init__.py and the
Makefile's test target).

Usage (from the repository root):
  python -m experiments.omp_wait_policy [--rounds 3] [--conditions quiet,loaded]
                                        [--out results/foundation/omp_wait_policy.json]
Writes the JSON (medians, every round, provenance) and a Markdown table beside it. "quiet" means no competing process
of this script's own; say in the note what else the machine ran.
"""
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path

LOOP = r'''
import torch, torch.nn.functional as F, sys
from ssl_learn.models import resnet18
torch.manual_seed(0)
m = resnet18(in_chans=1, width=16).to(memory_format=torch.channels_last); head = torch.nn.Linear(128, 10)
opt = torch.optim.SGD(list(m.parameters()) + list(head.parameters()), lr=0.05, momentum=0.9)
x = torch.rand(256, 1, 28, 28).contiguous(memory_format=torch.channels_last); y = torch.randint(0, 10, (256,))
n = int(sys.argv[1])
for i in range(n if n > 0 else 10**9):
    loss = F.cross_entropy(head(m(x)), y); opt.zero_grad(); loss.backward(); opt.step()
'''

def _env(policy):
    e = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    e['OMP_NUM_THREADS'] = '2'
    if policy != 'unset': e['OMP_WAIT_POLICY'] = policy
    return e

def _run(policy, steps):
    # torch is imported before ssl_learn in LOOP, so the package's own default does not apply: the policy is the env's
    t = time.perf_counter()
    subprocess.run([sys.executable, '-c', LOOP, str(steps)], env=_env(policy), check=True)
    return time.perf_counter() - t

def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.omp_wait_policy', description=__doc__.split('\n')[0])
    ap.add_argument('--rounds', type=int, default=3); ap.add_argument('--steps', type=int, default=25)
    ap.add_argument('--conditions', default='quiet,loaded')
    ap.add_argument('--out', default='results/foundation/omp_wait_policy.json')
    a = ap.parse_args()
    from ssl_learn.core import provenance
    policies = ('unset', 'ACTIVE', 'PASSIVE'); res = {}
    for cond in a.conditions.split(','):
        load = None
        if cond == 'loaded':   # the competitor runs with the default policy, as an unaware job would
            load = subprocess.Popen([sys.executable, '-c', LOOP, '0'], env=_env('unset')); time.sleep(8)
        try:
            walls = {p: [] for p in policies}
            for r in range(a.rounds):
                for p in (policies if r % 2 == 0 else policies[::-1]): walls[p].append(round(_run(p, a.steps), 2))
        finally:
            if load: load.kill(); load.wait()
        res[cond] = dict(median_wall_s={p: statistics.median(w) for p, w in walls.items()}, wall_s=walls)
        print(cond, res[cond]['median_wall_s'], flush=True)
    out = dict(settings=dict(rounds=a.rounds, steps=a.steps, batch=256, width=16, threads=2), results=res,
               **provenance())
    p = Path(a.out); p.parent.mkdir(parents=True, exist_ok=True); p.write_text(json.dumps(out, indent=1))
    lines = ['| condition | unset (default) | ACTIVE | PASSIVE | unset / PASSIVE |', '|---|---|---|---|---|']
    for c, r in res.items():
        m = r['median_wall_s']
        lines.append(f"| {c} | {m['unset']:.1f} s | {m['ACTIVE']:.1f} s | {m['PASSIVE']:.1f} s | "
                     f"{m['unset'] / m['PASSIVE']:.2f}× |")
    p.with_suffix('.md').write_text(f"Wall time of {a.steps} steps in a fresh process (median of {a.rounds} rounds), "
                                    f"commit {out['commit']}, {out['machine']['cpu']}\n\n" + '\n'.join(lines) + '\n')

if __name__ == '__main__': main()
