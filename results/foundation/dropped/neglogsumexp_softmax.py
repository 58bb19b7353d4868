import torch, time, statistics
import ssl_learn.core
from ssl_learn.losses import NegLogSumExp
class SoftmaxNLSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, n):
        x = (q @ n.t()).float()
        p = torch.softmax(x, 1)
        pmax, idx = p.max(1, keepdim=True)
        lse = x.gather(1, idx) - pmax.log()
        del x
        ctx.save_for_backward(p, q, n)
        return lse.squeeze(1)
    @staticmethod
    def backward(ctx, g):
        p, q, n = ctx.saved_tensors
        gq = ((p @ n.float()) * g[:, None]).to(q.dtype) if ctx.needs_input_grad[0] else None
        gn = (p.t() @ (q.float() * g[:, None])).to(n.dtype) if ctx.needs_input_grad[1] else None
        return gq, gn
torch.manual_seed(0)
q = torch.nn.functional.normalize(torch.randn(4096,128),dim=1)/0.2; n = torch.nn.functional.normalize(torch.randn(4096,128),dim=1)
def run(F):
    qq = q.clone().requires_grad_(); l = F.apply(qq, n); (l * torch.linspace(0.5,1.5,4096)).sum().backward(); return l.detach(), qq.grad
a, b = run(NegLogSumExp), run(SoftmaxNLSE)
print('diff out', (a[0]-b[0]).abs().max().item(), 'grad', (a[1]-b[1]).abs().max().item(), (a[1]).abs().max().item())
# float64 reference
x = (q.double() @ n.double().t()); ref = torch.logsumexp(x,1)
print('vs f64: current', (a[0].double()-ref).abs().max().item(), 'softmax', (b[0].double()-ref).abs().max().item())
T = {'cur':[], 'sm':[]}
for r in range(7):
    for k,F in (('cur',NegLogSumExp),('sm',SoftmaxNLSE)) if r%2==0 else (('sm',SoftmaxNLSE),('cur',NegLogSumExp)):
        t=time.perf_counter(); run(F); run(F); T[k].append((time.perf_counter()-t)/2*1e3)
print({k: round(statistics.median(v),1) for k,v in T.items()})
# the loss's two matmuls alone (forward logits, backward P @ n), same shapes
P = torch.rand(4096, 4096)
M = {'fwd': [], 'bwd': []}
for r in range(7):
    t = time.perf_counter(); q @ n.t(); M['fwd'].append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter(); P @ n; M['bwd'].append((time.perf_counter() - t) * 1e3)
fm, bm = statistics.median(M['fwd']), statistics.median(M['bwd'])
print(f"matmul q @ n.T (4096x128 @ 128x4096): {fm:.1f} ms = {2*4096*4096*128/fm/1e6:.0f} GFLOP/s; "
      f"P @ n (4096x4096 @ 4096x128): {bm:.1f} ms = {2*4096*4096*128/bm/1e6:.0f} GFLOP/s; threads {torch.get_num_threads()}")
