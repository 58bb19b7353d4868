"""Does the memory layout decide what grouped BatchNorm costs? A/B of a method's training step with the model in
channels_last (the library's default, on the CPU too) against the same model in the default contiguous (NCHW)
layout, in one process, windows interleaved (A B A B ... A), ratio per window against the mean of its neighbours.

Why: the methods whose BN layers normalise groups of the batch apart (MoCo v1/v2 and DenseCL, shuffle BN) once ran
faster in NCHW on the CPU, when `ssl_learn.batchnorm.group_batch_norm` moved each group's samples beside the channels
with a copy in and a copy out (a permute in channels_last), and the library kept them in NCHW there. Since the
copy-free path of channels-last batches (`_GroupBN`), this A/B put them back in channels_last. Both arms set their
layout explicitly, so the A/B holds whatever the library's default.

Writes results/foundation/grouped_bn_layout_<tier>.json. Usage (from the repository root):
  python -m experiments.grouped_bn_layout [--tier cpu] [--methods moco_v2,supervised] [--steps 8] [--warmup 2]
                                          [--repeats 5] [--lock /tmp/ssl_cpu.lock]
"""
import argparse, fcntl, json, statistics
from pathlib import Path
import torch
from fastai.callback.core import Callback
from experiments.throughput import Window, window
from ssl_learn.method import to_memory_format

class Layout(Callback):
    """Hands the model its views in memory layout `fmt`, after the method's callback put them in the model's own
    (`SSLModel.memory_format`: channels_last, or NCHW on the CPU for the shuffle-BN methods)."""
    order = -4
    def __init__(self, fmt): self.fmt = fmt
    def before_batch(self):
        self.learn.xb = to_memory_format(self.xb, self.fmt)

def measure(method, tier_name, steps, warmup, repeats):
    from ssl_learn.core import set_seed
    from ssl_learn.data import prepare_data
    from ssl_learn.learner import ssl_learner
    from ssl_learn.method import method_tier
    tier = method_tier(method, tier_name); set_seed(0)
    pre = prepare_data('fmnist', tier)[0]
    if (warmup + steps + 1) * tier.bs > len(pre): raise SystemExit(f"too few images ({len(pre)}) for the windows")
    def learner(layout):
        learn = ssl_learner(pre, method, tier, device='cpu'); learn.add_cb(Window(steps, warmup))
        fmt = torch.channels_last if layout == 'channels_last' else torch.contiguous_format
        learn.model.to(memory_format=fmt); learn.add_cb(Layout(fmt))   # both arms explicit
        return learn
    L = {k: learner(k) for k in ('channels_last', 'nchw')}
    # the layout the network computes in (on grey images the input's own layout is ambiguous: the weights decide),
    # seen at the first BatchNorm layer's input during the warm-up fits
    seen = {}
    def look(k):
        def hook(module, inputs, output):      # returns None: the output is left as it is
            x = inputs[0]
            seen.setdefault(k, x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return hook
    for k, learn in L.items():
        bn = next(m for m in learn.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        h = bn.register_forward_hook(look(k)); window(learn); h.remove()      # the warm-up fit
    assert seen == {'channels_last': True, 'nchw': False}, f"layouts not as intended: {seen}"

    A, B = [window(L['channels_last'])], []
    for _ in range(repeats): B.append(window(L['nchw'])); A.append(window(L['channels_last']))
    ips = lambda w: w[1] / w[0]
    ratios = [ips(b) / ((ips(a) + ips(c)) / 2) for b, a, c in zip(B, A, A[1:])]
    return dict(method=method, tier=tier.name, bs=tier.bs, arch=tier.arch, threads=torch.get_num_threads(),
                channels_last_images_per_s=[round(ips(w), 1) for w in A],
                nchw_images_per_s=[round(ips(w), 1) for w in B],
                nchw_speedup=round(statistics.median(ratios), 3), ratios=[round(r, 3) for r in ratios])

if __name__ == '__main__':
    ap = argparse.ArgumentParser(prog='python -m experiments.grouped_bn_layout', description=__doc__.split('\n')[0])
    ap.add_argument('--tier', default='cpu'); ap.add_argument('--methods', default='moco_v2,supervised')
    ap.add_argument('--steps', type=int, default=8); ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=5); ap.add_argument('--lock', default='/tmp/ssl_cpu.lock')
    ap.add_argument('--out', default=None)
    a = ap.parse_args()
    if min(a.steps, a.warmup, a.repeats) < 1: ap.error('--steps, --warmup and --repeats must be at least 1')
    from ssl_learn.core import provenance
    out = Path(a.out or f'results/foundation/grouped_bn_layout_{a.tier}.json')
    res = dict(settings=vars(a), rows={})
    with open(a.lock, 'w') as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        for m in a.methods.split(','):
            r = measure(m, a.tier, a.steps, a.warmup, a.repeats); res['rows'][m] = r
            print(f"{m:12s} NCHW / channels_last images/s: {r['nchw_speedup']:.3f} (per window {r['ratios']})",
                  flush=True)
            res.update(provenance()); out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=2, default=str))
