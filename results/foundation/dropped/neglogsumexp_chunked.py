"""NegLogSumExp computed in row blocks (each block's logits, max, exp and sum while it is in cache) against the
library's one-buffer version: correctness (largest output difference, largest gradient difference relative to the
largest entry) and the median ms of forward + backward, two rounds.

Usage (repository root): python results/foundation/dropped/neglogsumexp_chunked.py N K [repeats]   (D = 128)"""
import torch, time, sys
from ssl_learn.core import matmul_nt
from ssl_learn.losses import NegLogSumExp

class Chunked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, n, rows):
        qf, nf = q.float(), n.float()
        out, scale, chunks = [], [], []
        for i in range(0, len(qf), rows):
            x = matmul_nt(qf[i:i + rows], nf).float()
            m = x.amax(1, keepdim=True)
            x.sub_(m).exp_()
            s = x.sum(1, keepdim=True)
            out.append(m + s.log()); scale.append(s.reciprocal_()); chunks.append(x)
        ctx.rows = rows
        ctx.save_for_backward(q, n, torch.cat(scale), *chunks)
        return torch.cat(out).squeeze(1)
    @staticmethod
    def backward(ctx, g):
        q, n, r, *chunks = ctx.saved_tensors
        w = g[:, None] * r
        nf = n.float().t(); qf = q.float()
        gq = torch.empty(len(q), q.shape[1], dtype=torch.float32) if ctx.needs_input_grad[0] else None
        gn = torch.zeros_like(n, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        for j, x in enumerate(chunks):
            i = j * ctx.rows
            p = x.mul_(w[i:i + len(x)])
            if gq is not None: gq[i:i + len(x)] = matmul_nt(p, nf)
            if gn is not None: gn.addmm_(p.t(), qf[i:i + len(x)])
        return (gq.to(q.dtype) if gq is not None else None), (gn.to(n.dtype) if gn is not None else None), None

def run(fn, q, n, reps):
    ts = []
    for _ in range(reps):
        qq = q.detach().requires_grad_()
        t = time.perf_counter(); y = fn(qq, n); y.sum().backward(); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2] * 1e3

if __name__ == '__main__':
    torch.manual_seed(0)
    N, K, D = int(sys.argv[1]), int(sys.argv[2]), 128
    q = torch.nn.functional.normalize(torch.randn(N, D), dim=1) / 0.2
    n = torch.nn.functional.normalize(torch.randn(K, D), dim=1)
    # correctness
    qa = q.clone().requires_grad_(); ya = NegLogSumExp.apply(qa, n); (ya * torch.arange(N)).sum().backward()
    for rows in (64, 256, 1000):
        qb = q.clone().requires_grad_(); yb = Chunked.apply(qb, n, rows); (yb * torch.arange(N)).sum().backward()
        print(rows, (ya - yb).abs().max().item(), ((qa.grad - qb.grad).abs().max() / qa.grad.abs().max()).item())
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    for rnd in range(2):
        res = {'full': run(NegLogSumExp.apply, q, n, reps)}
        for rows in (64, 128, 256, 512, 1024):
            res[rows] = run(lambda a, b: Chunked.apply(a, b, rows), q, n, reps)
        print(torch.get_num_threads(), {k: round(v, 1) for k, v in res.items()})
