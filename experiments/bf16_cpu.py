"""bfloat16 autocast on the CPU against float32, per method: the speed of the training step, and whether the same
short pre-training learns the same (loss curves and kNN monitor).

- **speed**: the method's learner in float32 and in bfloat16 (`ssl_learner(precision='bf16')`: the forward pass under
  `torch.autocast('cpu', torch.bfloat16)`, weights, optimiser and loss in float32), built in one process and timed in
  windows interleaved (F B F B ... F) of `--steps` optimiser steps after `--warmup`; each bf16 window is divided by the
  mean of the fp32 windows either side of it and the median is reported, so a machine whose speed drifts moves both
  sides of a ratio alike;
- **accuracy**: `--epochs` epochs of the tier's schedule on `--n-train` of its pre-training images, from the same
  seed (the same initial weights, the same views) in each precision, with the kNN monitor (k=20) on the tier's
  held-out images after each epoch; reported: the per-step training losses of both, the gap between their running
  means over the last epoch relative to the fp32 loss, and each one's kNN per epoch; plus a figure of the curves.

Needs a CPU with bfloat16 arithmetic (AVX-512 BF16 or AMX: `ssl_learn.learner.bf16_supported`). Writes
results/foundation/bf16_cpu_<tier>.json and .png (--out). Usage (from the repository root):
  python -m experiments.bf16_cpu [--tier cpu] [--methods simclr,moco_v2,byol] [--steps 8] [--warmup 2] [--repeats 5]
                                 [--epochs 2] [--n-train 8192] [--lock /tmp/ssl_cpu.lock] [--out PATH]
"""
import argparse, fcntl, json, statistics
from pathlib import Path

def speed(method, tier, pre, steps, warmup, repeats):
    from ssl_learn.core import set_seed
    from ssl_learn.learner import ssl_learner
    from experiments.throughput import Window, window
    if (warmup + steps + 1) * tier.bs > len(pre): raise SystemExit(f"too few images ({len(pre)}) for the windows")
    L = {}
    for p in ('fp32', 'bf16'):
        set_seed(0); L[p] = ssl_learner(pre, method, tier, device='cpu', precision=p)
        L[p].add_cb(Window(steps, warmup))
        window(L[p])                                           # the first fit of each: allocation, caches
    F, B = [window(L['fp32'])], []
    for _ in range(repeats): B.append(window(L['bf16'])); F.append(window(L['fp32']))
    ips = lambda w: w[1] / w[0]
    ratios = [ips(b) / ((ips(a) + ips(c)) / 2) for b, a, c in zip(B, F, F[1:])]
    return dict(fp32_images_per_s=[round(ips(w), 1) for w in F], bf16_images_per_s=[round(ips(w), 1) for w in B],
                bf16_speedup=round(statistics.median(ratios), 3), ratios=[round(r, 3) for r in ratios])

def curves(method, tier, pre, bank, query, epochs, n_train):
    from ssl_learn.core import get_tier, set_seed
    from ssl_learn.learner import ssl_learner
    tier = get_tier(tier, epochs=epochs)
    out = {}
    for p in ('fp32', 'bf16'):
        set_seed(0)
        learn = ssl_learner(pre.subset(min(n_train, len(pre))), method, tier, valid=query,
                            monitor=(bank, query, 20), device='cpu', precision=p)
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, learn.lr)
        names = learn.recorder.metric_names[1:-1]   # 'epoch' ... 'time' dropped
        knn = [dict(zip(names, v))['knn20'] for v in learn.recorder.values]
        out[p] = dict(losses=[round(float(x), 5) for x in learn.recorder.losses], knn20=[round(k, 2) for k in knn])
    n = len(out['fp32']['losses']) // epochs          # steps per epoch: the last epoch's running means are compared
    last = lambda p: statistics.fmean(out[p]['losses'][-n:])
    out['last_epoch_loss'] = dict(fp32=round(last('fp32'), 4), bf16=round(last('bf16'), 4))
    out['last_epoch_loss_gap'] = round(abs(last('bf16') - last('fp32')) / abs(last('fp32')), 4)
    out['knn20_gap'] = round(out['bf16']['knn20'][-1] - out['fp32']['knn20'][-1], 2)
    return out

def plot(res, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = {m: r for m, r in res['rows'].items() if 'curves' in r}
    if not rows: return
    fig, axs = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.2), squeeze=False)
    for ax, (m, r) in zip(axs[0], rows.items()):
        for p, c in (('fp32', 'C0'), ('bf16', 'C1')):
            ax.plot(r['curves'][p]['losses'], c, lw=0.8, label=f"{p}: kNN {r['curves'][p]['knn20'][-1]:.1f}")
        ax.set_title(f"{m}: bf16 {r['speed']['bf16_speedup']:.2f}x fp32" if 'speed' in r else m)
        ax.set_xlabel('step'); ax.set_ylabel('training loss (smoothed)'); ax.legend(fontsize=8)
    fig.tight_layout(); fig.savefig(path, dpi=100); plt.close(fig)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(prog='python -m experiments.bf16_cpu', description=__doc__.split('\n')[0])
    ap.add_argument('--tier', default='cpu'); ap.add_argument('--methods', default='simclr,moco_v2,byol')
    ap.add_argument('--steps', type=int, default=8); ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--epochs', type=int, default=2, help='epochs of the accuracy runs (0: speed only)')
    ap.add_argument('--n-train', type=int, default=8192, help='pre-training images of the accuracy runs')
    ap.add_argument('--lock', default='/tmp/ssl_cpu.lock'); ap.add_argument('--out', default=None)
    a = ap.parse_args()
    if min(a.steps, a.warmup, a.repeats, a.n_train) < 1 or a.epochs < 0:
        ap.error('--steps, --warmup, --repeats and --n-train must be at least 1, --epochs at least 0')
    from ssl_learn.core import provenance, set_seed
    from ssl_learn.data import prepare_data
    from ssl_learn.learner import bf16_supported
    from ssl_learn.method import method_tier
    if not bf16_supported(): raise SystemExit("this CPU has no bfloat16 arithmetic (AVX-512 BF16 or AMX)")
    out = Path(a.out or f'results/foundation/bf16_cpu_{a.tier}.json')
    res = dict(settings=vars(a), rows={})
    with open(a.lock, 'w') as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        for m in a.methods.split(','):
            tier = method_tier(m, a.tier); set_seed(0)
            pre, bank, query, _, _ = prepare_data('fmnist', tier)
            r = res['rows'][m] = dict(arch=tier.arch, bs=tier.bs)
            r['speed'] = speed(m, tier, pre, a.steps, a.warmup, a.repeats)
            print(f"{m:12s} bf16 / fp32 images/s: {r['speed']['bf16_speedup']:.3f} (per window {r['speed']['ratios']})",
                  flush=True)
            if a.epochs:
                r['curves'] = curves(m, tier, pre, bank, query, a.epochs, a.n_train)
                c = r['curves']
                print(f"{m:12s} last-epoch loss fp32 {c['last_epoch_loss']['fp32']} "
                      f"bf16 {c['last_epoch_loss']['bf16']} "
                      f"(gap {c['last_epoch_loss_gap']:.2%}); kNN fp32 {c['fp32']['knn20']} bf16 {c['bf16']['knn20']}",
                      flush=True)
            res.update(provenance()); out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=2, default=str)); plot(res, out.with_suffix('.png'))
