"""Every method at the machine's compute ceiling: images/s, FLOPs and GFLOP/s of each method's training step, beside a
plain supervised step of the same backbone measured in the same run.

For each method, in a fresh process (so that the peak memory is its own), on the tier's pre-training images:
- **bare steps**: `--steps` optimiser steps after `--warmup`, timed between `after_batch` events, in `--repeats`
  windows of one cancelled `fit` each (median reported): images/s, views/s. Per-step work that runs every n steps
  lands in the windows at its own rate only when the window's length divides by n (ODC's centroid update, every 10
  steps, falls once in each 8-step window: its figure is a little low);
- **FLOPs per image**: `torch.utils.flop_counter.FlopCounterMode` over one whole training step, from the raw batch
  to the end of `after_step`: the views, every encoder pass, heads, losses, backward and the per-step work of the
  model (momentum updates, queues); what it counts is what torch registers as FLOPs (matmuls, convolutions,
  attention), so elementwise work counts as time but not as work;
- **GFLOP/s** = FLOPs per image × images/s, and its ratio to a plain supervised step of the same backbone, built in
  the same process and timed in windows interleaved with the method's (S M S M … M S): each method window is divided
  by the mean of the supervised windows either side of it, and the median of those ratios is reported, so that a
  machine whose speed drifts during the run (other tenants, clocks) moves both sides of a ratio alike. The
  `supervised` row is itself measured against a second supervised learner: its ratio shows the method's noise;
- **a whole epoch** (`--epoch-images` images, the kNN monitor and the checkpoint as `ssl_learn train` runs them):
  the share of the epoch's wall time spent outside the training steps (data, monitor, checkpoint), and within it
  the method's own pass over the data where it has one (DeepCluster's clustering before each epoch: a forward pass
  over every training image and k-means; `cluster_seconds`). ODC's one-off initial clustering runs before the first
  epoch (`before_fit`) and is in neither figure;
- **peak memory** (the process's resident set; it holds the supervised reference learner too).

Plus the machine's dense float32 matmul figure (4096², all threads) for scale, through the BLAS (`a @ b`) and through
oneDNN (`core.matmul_nt`, a 1×1 convolution), which differ by 2× on some CPUs. Writes
`results/foundation/throughput_<tier>.json` with provenance; `--lock` holds a file lock for the whole run.

Usage (from the repository root):
  python -m experiments.throughput [--tier cpu] [--methods all|a,b] [--steps 8] [--warmup 2] [--repeats 3]
                                   [--epoch-images 4096] [--monitor-precision auto|fp32|bf16] [--out PATH]
                                   [--lock /tmp/ssl_cpu.lock] [--table-only] [--compile]
"""
import argparse, fcntl, json, subprocess, sys, time
from pathlib import Path
from fastai.callback.core import Callback, CancelFitException

class Window(Callback):
    """Times one window of `steps` optimiser steps after `warmup` (between `after_batch` events, at order -20: before
    the raw batch becomes views), then cancels the fit; with `count_flops`, counts the FLOPs of the first fit's first
    step. `result`: (seconds, images, views) of the window."""
    order = -20
    def __init__(self, steps:int, warmup:int, count_flops:bool=False):
        self.steps, self.warmup, self.count_flops, self.flops, self.fc = steps, warmup, count_flops, None, None
    def before_fit(self): self.i, self.result = 0, None
    def before_batch(self):
        if self.training and self.i == 0 and self.count_flops:
            from torch.utils.flop_counter import FlopCounterMode
            self.fc = FlopCounterMode(display=False); self.fc.__enter__()
    def after_batch(self):
        if not self.training: return
        if self.fc is not None:
            self.fc.__exit__(None, None, None)
            self.flops, self.fc, self.count_flops = self.fc.get_total_flops(), None, False
            self.per_step_images = self.learn.throughput.n_images
        self.i += 1
        now = (time.perf_counter(), self.learn.throughput.n_images, self.learn.throughput.n_views)
        if self.i == self.warmup: self.mark = now
        elif self.i == self.warmup + self.steps:
            self.result = tuple(b - a for a, b in zip(self.mark, now)); raise CancelFitException

def window(learn):
    "One timed window of `learn` (a `Window` added): (seconds, images, views)."
    with learn.no_bar(), learn.no_logging(): learn.fit(1, learn.lr)
    if learn.window.result is None: raise SystemExit("a fit ended before its timed window did: too few images")
    return learn.window.result

CHILD = r'''
import json, statistics, sys, time, tempfile, torch
from pathlib import Path
from fastai.callback.core import Callback, CancelFitException
from experiments.throughput import Window, window
from ssl_learn.core import set_seed, peak_memory_mb
from ssl_learn.data import prepare_data
from ssl_learn.learner import ssl_learner
from ssl_learn.method import method_tier
method, tier_name, steps, warmup, repeats, epoch_images = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
arch = sys.argv[7] if len(sys.argv) > 7 and sys.argv[7] else None
monitor_precision = sys.argv[8] if len(sys.argv) > 8 else 'auto'
compiled = len(sys.argv) > 9 and sys.argv[9] == 'compile'
tier = method_tier(method, tier_name, arch=arch)
set_seed(0)
pre, bank, query, _, _ = prepare_data('fmnist', tier)

# The method and a plain supervised step of the same backbone, in this one process, their windows interleaved
# (S M S M … M S): each method window is compared with the supervised windows either side of it, so a machine that
# speeds up or slows down during the run moves both sides of each ratio alike.
need = (warmup + steps + 1) * tier.bs
if need > len(pre): raise SystemExit(f"need {need} images for the bare steps, have {len(pre)}")
learn = ssl_learner(pre, method, tier, device='cpu'); learn.add_cb(Window(steps, warmup, count_flops=True))
ref_tier = method_tier('supervised', tier_name, arch=tier.arch)
ref = ssl_learner(pre, 'supervised', ref_tier, device='cpu'); ref.add_cb(Window(steps, warmup, count_flops=True))
window(learn); window(ref)           # the first fit of each: allocation, caches; its first step is the counted one
if compiled:                         # --compile: both compiled after the FLOPs are counted (eagerly), then warmed up
    from ssl_learn.learner import compile_networks
    compile_networks(learn.model); compile_networks(ref.model); window(learn); window(ref)
S, M = [window(ref)], []
for _ in range(repeats): M.append(window(learn)); S.append(window(ref))
flops_img = learn.window.flops / learn.window.per_step_images
ref_flops_img = ref.window.flops / ref.window.per_step_images
gf = lambda w, f: f * w[1] / w[0] / 1e9
ratios = [gf(m, flops_img) / ((gf(a, ref_flops_img) + gf(b, ref_flops_img)) / 2) for m, a, b in zip(M, S, S[1:])]
med = statistics.median
res = dict(method=method, tier=tier.name, bs=tier.bs, arch_name=tier.arch, arch=learn.model.backbone.config,
           steps=steps, warmup=warmup, repeats=len(M), interleaved=True,
           images_per_s=round(med(n / dt for dt, n, _ in M), 1), views_per_s=round(med(v / dt for dt, _, v in M), 1),
           images_per_s_all=[round(n / dt, 1) for dt, n, _ in M], gflop_per_image=round(flops_img / 1e9, 4),
           gflops=round(med(gf(m, flops_img) for m in M), 1),
           ref=dict(method='supervised', arch_name=ref_tier.arch, images_per_s=round(med(n / dt for dt, n, _ in S), 1),
                    images_per_s_all=[round(n / dt, 1) for dt, n, _ in S],
                    gflop_per_image=round(ref_flops_img / 1e9, 4),
                    gflops=round(med(gf(s, ref_flops_img) for s in S), 1)),
           ratio=round(med(ratios), 3), ratios=[round(r, 3) for r in ratios], threads=torch.get_num_threads(),
           compiled=compiled)
del ref

# a whole epoch as `ssl_learn train` runs it: monitor and checkpoint included
class EpochClock(Callback):
    order = -20
    def before_fit(self): self.step_s, self.t_batch = 0., None
    def before_epoch(self): self.t0 = time.perf_counter()
    def before_batch(self):
        if self.training: self.t_batch = time.perf_counter()
    def after_batch(self):
        if self.training and self.t_batch is not None: self.step_s += time.perf_counter() - self.t_batch
class EpochEnd(Callback):
    order = 1000                     # after the monitor's metrics and the checkpoint
    def after_epoch(self): self.wall = time.perf_counter() - self.learn.epoch_clock.t0
if epoch_images:
    set_seed(0)
    with tempfile.TemporaryDirectory() as d:
        k = min(20, len(bank))
        learn = ssl_learner(pre.subset(epoch_images, seed=0, balanced=False), method, tier, valid=query,
                            monitor=(bank, query, k, 0.07, 512, monitor_precision),
                            path=d, device='cpu')
        learn.add_cbs([EpochClock(), EpochEnd()])
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, learn.lr)
        wall, step_s = learn.epoch_end.wall, learn.epoch_clock.step_s
        # the method's own pass over the data inside the epoch (DeepCluster's clustering), apart from the overhead
        pass_s = float(getattr(learn.model, 'cluster_seconds', 0.))
        res.update(epoch_images=epoch_images, epoch_seconds=round(wall, 2), epoch_step_seconds=round(step_s, 2),
                   epoch_outside_share=round(1 - step_s / wall, 3), epoch_images_per_s=round(epoch_images / wall, 1),
                   epoch_method_pass_seconds=round(pass_s, 2),
                   epoch_overhead_share=round(1 - (step_s + pass_s) / wall, 3))
res['peak_memory_mb'] = round(peak_memory_mb(), 1)
print('\n@@RESULT ' + json.dumps(res))
'''

MATMUL = r'''
import json, time, torch
from ssl_learn.core import matmul_nt
a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
def best(f):
    f(); ts = []
    for _ in range(5):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return round(2 * 4096 ** 3 / min(ts) / 1e9, 1)
print('@@RESULT ' + json.dumps(dict(gflops=best(lambda: a @ b), onednn_gflops=best(lambda: matmul_nt(a, b)),
                                    threads=torch.get_num_threads())))
'''

def child(code, *args, env=None):
    "Run `code` in a fresh Python (`env`: its environment, default this one's); its `@@RESULT` JSON, or (None, error)."
    r = subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, env=env)
    lines = [l for l in r.stdout.splitlines() if l.startswith('@@RESULT ')]
    if r.returncode != 0 or not lines: return None, (r.stderr.strip().splitlines() or ['?'])[-1]
    return json.loads(lines[-1][9:]), None

def reference(rows, r):
    "The supervised row of the same backbone as row `r` (a ViT method is compared with a supervised ViT)."
    a = r.get('arch_name')
    return next((s for k, s in rows.items() if k.startswith('supervised') and s.get('arch_name') == a), rows.get('supervised'))

def bench_outside(tier, method, out='results/bench/fmnist'):
    """The share of whole benchmark epochs spent outside training (the kNN monitor and the held-out loss; the
    checkpoint is saved after `seconds_epoch` is taken, so it is not in the share),
    from `ssl_learn bench`'s record of `method` at `tier` (1 − Σ seconds_train / Σ seconds_epoch); None if not
    run."""
    p = Path(out)/tier/'train'/f'{method}.json'
    if not p.exists(): return None
    h = json.loads(p.read_text()).get('history', [])
    st, se = sum(x.get('seconds_train', 0) for x in h), sum(x.get('seconds_epoch', 0) for x in h)
    return 1 - st / se if se else None

def table(res) -> str:
    """Markdown: one row per method, the supervised steps first, ratios to the supervised step of the same backbone;
    the time outside the steps in this run's short epoch and, where the benchmark has run the method, in its epochs."""
    rows, tier = res['rows'], res['settings']['tier']
    ep = res['settings'].get('epoch_images')
    short = f'outside steps, {ep}-image epoch' if ep else 'outside steps, short epoch (not run)'
    lines = ['| method | backbone | images/s | views/s | GFLOP/image | GFLOP/s | × supervised (same backbone) | '
             f'{short} | outside steps, benchmark epochs | peak MB |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for m in sorted(rows, key=lambda k: (not k.startswith('supervised'), k)):
        r = rows[m]; sup = reference(rows, r)
        ratio = (f"{r['ratio']:.2f}" if 'ratio' in r else f"{r['gflops'] / sup['gflops']:.2f}" if sup else '-')
        out = f"{100 * r['epoch_outside_share']:.0f}%" if 'epoch_outside_share' in r else '-'
        if r.get('epoch_method_pass_seconds'):   # say how much of it is the method's own pass (DeepCluster's clustering)
            out += f" ({100 * r['epoch_method_pass_seconds'] / r['epoch_seconds']:.0f}% its clustering pass)"
        b = bench_outside(tier, m); b = f"{100 * b:.1f}%" if b is not None else '-'
        lines.append(f"| {m} | {r.get('arch_name', '?')} | {r['images_per_s']:.0f} | {r['views_per_s']:.0f} | "
                     f"{r['gflop_per_image']:.3f} | {r['gflops']:.0f} | {ratio} | {out} | {b} | "
                     f"{r['peak_memory_mb']:.0f} |")
    return '\n'.join(lines)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(prog='python -m experiments.throughput', description=__doc__.split('\n')[0])
    ap.add_argument('--tier', default='cpu'); ap.add_argument('--methods', default='all')
    ap.add_argument('--steps', type=int, default=8); ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--epoch-images', type=int, default=4096, help='images in the whole-epoch measurement (0: skip it)')
    ap.add_argument('--monitor-precision', default='auto', choices=('auto', 'fp32', 'bf16'),
                    help="the kNN monitor's forward passes in the whole-epoch measurement (KNNMonitor's precision)")
    ap.add_argument('--compile', action='store_true',
                    help="torch.compile the backbones of the method and of the supervised reference (after counting "
                         "the FLOPs eagerly; the whole-epoch measurement stays eager)")
    ap.add_argument('--out', default=None,
                    help='default: results/foundation/throughput_<tier>.json (with --compile: throughput_<tier>_compiled.json)')
    ap.add_argument('--lock', default='/tmp/ssl_cpu.lock')
    ap.add_argument('--table-only', action='store_true',
                    help="re-render the Markdown table of an existing JSON (e.g. once the benchmark's epochs exist)")
    a = ap.parse_args()
    if min(a.steps, a.warmup, a.repeats) < 1: ap.error('--steps, --warmup and --repeats must be at least 1')
    if a.table_only:
        out = Path(a.out or f"results/foundation/throughput_{a.tier}{'_compiled' if a.compile else ''}.json")
        out.with_suffix('.md').write_text(table(json.loads(out.read_text())) + '\n')
        print(out.with_suffix('.md').read_text())
        sys.exit(0)
    from ssl_learn.method import list_methods
    from ssl_learn.core import provenance
    methods = list_methods() if a.methods == 'all' else a.methods.split(',')
    if 'supervised' not in methods: methods = ['supervised'] + methods       # the reference, measured in the same run
    methods = ['supervised'] + [m for m in methods if m != 'supervised']
    out = Path(a.out or f"results/foundation/throughput_{a.tier}{'_compiled' if a.compile else ''}.json")
    res = dict(settings=dict(tier=a.tier, steps=a.steps, warmup=a.warmup, repeats=a.repeats, epoch_images=a.epoch_images,
                             monitor_precision=a.monitor_precision, compile=a.compile),
               rows={}, failed={})
    t0 = time.time()
    with open(a.lock, 'w') as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        res['matmul'], _ = child(MATMUL)
        print(f"dense float32 matmul 4096²: {res['matmul']['gflops']} GFLOP/s (BLAS), {res['matmul']['onednn_gflops']} "
              f"GFLOP/s (oneDNN, core.matmul_nt) ({res['matmul']['threads']} threads)", flush=True)
        from ssl_learn.method import method_tier
        from ssl_learn.core import get_tier
        archs = sorted({method_tier(m, a.tier).arch for m in methods} - {get_tier(a.tier).arch})
        jobs = [(m, '') for m in methods[:1]] + [(f'supervised_{x}', x) for x in archs] + [(m, '') for m in methods[1:]]
        for m, arch in jobs:
            name = m.split('_vit')[0] if m.startswith('supervised_') else m
            row, err = child(CHILD, name, a.tier, a.steps, a.warmup, a.repeats, a.epoch_images, arch, a.monitor_precision,
                             'compile' if a.compile else 'eager')
            if err: res['failed'][m] = err; print(f"FAILED {m}: {err}", flush=True); continue
            res['rows'][m] = row
            sup = reference(res['rows'], row)
            ratio = row['ratio'] if 'ratio' in row else row['gflops'] / sup['gflops']
            out_share = 100 * row.get('epoch_outside_share', float('nan'))
            print(f"{m:14s} {row['images_per_s']:7.1f} img/s {row['views_per_s']:7.1f} views/s "
                  f"{row['gflop_per_image']:.3f} GFLOP/img {row['gflops']:6.1f} GFLOP/s ({ratio:.2f}× supervised)  "
                  f"outside steps {out_share:.0f}%  peak {row['peak_memory_mb']:.0f} MB", flush=True)
            res.update(seconds=round(time.time() - t0, 1), **provenance())
            out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=2, default=str))
    out.with_suffix('.md').write_text(table(res) + '\n')
    print(table(res))
