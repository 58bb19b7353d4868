"""Shuffle-BN's cost: the chunked path against `ssl_learn.batchnorm.fused_bn` (whose prototype this script timed).

MoCo and DenseCL encode each batch in `bn_groups` chunks, each its own BN batch (`ssl_learn.batchnorm.grouped`), so
every convolution and BN runs at a fraction of the batch. The alternative timed here runs the encoder once over the whole
batch with every BN layer normalising its groups in one call: the batch is rearranged so that the groups sit side by
side in the channel dimension (a layout copy in and out, kept channels-last), and the running statistics are updated as
if the groups had come one after another. It checks that outputs, gradients and running statistics agree with the
chunked path, then times one query pass (with gradients) plus one shuffled key pass (without) of a ResNet-18 + MLP head,
batch 256 at 28 px, for: chunked into 4 groups, fused into 4 groups, fused with the earlier layout copies (the groups
moved beside the channels and back for one native batch-norm call; what `group_batch_norm` still does for layouts its
copy-free path cannot view), and 1 group (no shuffle-BN; the bound). Modes alternate within each repeat.

Usage (from the repository root):
  python -m experiments.fused_group_bn [--widths 16,32] [--repeats 7] [--threads N] [--out results/foundation/fused_group_bn.json]
"""
import argparse, copy, json, statistics, time
from pathlib import Path

def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.fused_group_bn', description=__doc__.split('\n')[0])
    ap.add_argument('--widths', default='16,32'); ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--groups', type=int, default=4)
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    ap.add_argument('--out', default='results/foundation/fused_group_bn.json')
    a = ap.parse_args()
    import torch
    if a.threads: torch.set_num_threads(a.threads)
    from torch import nn
    from ssl_learn.core import provenance
    from ssl_learn.models import resnet18, MLPHead
    from ssl_learn.batchnorm import grouped, fused_bn, group_batch_norm, _bns

    def encoder(w):
        return nn.Sequential(resnet18(in_chans=1, width=w), MLPHead(8*w, 8*w, 128, bn=False)).to(
            memory_format=torch.channels_last)

    def run(enc, x, g, mode, perm=None):
        if mode == 'fused, layout copies':   # each BN layer's forward, for this pass, the copy path of group_batch_norm
            xs = x if perm is None else x[perm]
            bns = _bns(enc)
            for b in bns: b.forward = lambda t, b=b: group_batch_norm(t, b, g, copy_free=False)
            try: out = enc(xs)
            finally:
                for b in bns: del b.forward
            if perm is None: return out
            res = torch.empty_like(out); res[perm] = out; return res
        if mode == 'fused':
            xs = x if perm is None else x[perm]
            with fused_bn(enc, g): out = enc(xs)
            if perm is None: return out
            res = torch.empty_like(out); res[perm] = out; return res
        return grouped(enc, x, 1 if mode == 'one group' else g, perm)

    g, res = a.groups, dict(settings=dict(groups=a.groups, batch=256, size=28, repeats=a.repeats), rows={})
    torch.manual_seed(0)
    # agreement, on a small encoder
    e1 = encoder(8); e2 = copy.deepcopy(e1)
    x = torch.rand(32, 1, 28, 28).contiguous(memory_format=torch.channels_last); perm = torch.randperm(32)
    o1, o2 = run(e1, x, g, 'chunked', perm), run(e2, x, g, 'fused', perm)
    o1.square().sum().backward(); o2.square().sum().backward()
    gmax = max(p.grad.abs().max().item() for p in e1.parameters())
    res['agreement'] = dict(max_abs_dout=(o1 - o2).abs().max().item(),
                            max_rel_dgrad=max((p.grad - q.grad).abs().max().item() for p, q in
                                              zip(e1.parameters(), e2.parameters())) / gmax,
                            max_abs_dbuffer=max((p - q).abs().max().item() for p, q in zip(e1.buffers(), e2.buffers())))
    print('agreement', res['agreement'], flush=True)
    for w in map(int, a.widths.split(',')):
        modes = ('chunked', 'fused', 'fused, layout copies', 'one group')
        torch.manual_seed(0); q, k = encoder(w), encoder(w)
        x = torch.rand(256, 1, 28, 28).contiguous(memory_format=torch.channels_last); perm = torch.randperm(256)
        ts = {m: [] for m in modes}
        for i in range(a.repeats + 2):
            for mode in (modes if i % 2 == 0 else modes[::-1]):
                t = time.perf_counter()
                zq = run(q, x, g, mode)
                with torch.no_grad(): zk = run(k, x, g, mode, perm)
                (zq * zk).sum().backward(); q.zero_grad(set_to_none=True)
                if i >= 2: ts[mode].append(time.perf_counter() - t)
        for mode in modes:
            res['rows'][f'w{w} {mode}'] = dict(width=w, mode=mode, median_s=round(statistics.median(ts[mode]), 4),
                                               seconds=[round(t, 4) for t in ts[mode]])
            print(w, mode, res['rows'][f'w{w} {mode}']['median_s'], flush=True)
        c = res['rows'][f'w{w} chunked']['median_s']
        for mode in modes[1:]:
            res['rows'][f'w{w} {mode}']['speedup_vs_chunked'] = round(c / res['rows'][f'w{w} {mode}']['median_s'], 3)
    res.update(**provenance(), threads=torch.get_num_threads())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))

if __name__ == '__main__': main()
