"""DenseCL's cpu-tier step in parts, in one process (random 28-px images, the queues as built, 2 threads): the two
encoders' forward, the loss terms, the global and dense InfoNCE, the matching, and forward + loss + backward;
medians of 7 (5) repeats, ms.

Usage (repository root): python results/foundation/densecl_step_parts.py"""
import torch, time
from ssl_learn.core import set_seed
from ssl_learn.data import prepare_data
from ssl_learn.learner import ssl_learner
from ssl_learn.method import method_tier
from ssl_learn.methods.densecl import dense_match
from ssl_learn.losses import info_nce
tier = method_tier('densecl', 'cpu'); set_seed(0)
pre, *_ = prepare_data('fmnist', tier)
learn = ssl_learner(pre, 'densecl', tier, device='cpu')
m = learn.model
print(type(m), m.queue().shape, m.queue2().shape, m.T)
x1 = torch.rand(256, 1, 28, 28); x2 = torch.rand(256, 1, 28, 28)
m.train()
def tm(f, reps=7):
    ts=[]
    for _ in range(reps):
        t=time.perf_counter(); r=f(); ts.append(time.perf_counter()-t)
    return sorted(ts)[reps//2]*1e3, r
t_fwd, pred = tm(lambda: m(x1, x2))
(q, q_grid, q_b, _), (k, k_grid, k_b, _) = pred
print('S', q_grid.shape, q_b.shape)
print('forward ms', t_fwd)
print('loss_terms ms', tm(lambda: m.loss_terms(pred))[0])
print('global', tm(lambda: info_nce(q, k, m.queue(), m.T))[0])
print('match', tm(lambda: dense_match(q_b, k_b))[0])
match = dense_match(q_b, k_b)
flat = lambda t: t.transpose(1, 2).reshape(-1, t.shape[1])
km = k_grid.gather(2, match[:, None].expand(-1, k_grid.shape[1], -1))
print('gather+flat', tm(lambda: (flat(q_grid), flat(k_grid.gather(2, match[:, None].expand(-1, k_grid.shape[1], -1)))))[0])
qf, kf = flat(q_grid), flat(km)
print('dense info_nce fwd', tm(lambda: info_nce(qf, kf, m.queue2(), m.T))[0])
def fb():
    p = m(x1, x2); l = m.loss(p); l.backward(); return l
m.queue.push = lambda *a: None; m.queue2.push = lambda *a: None
print('fwd+loss+bwd', tm(fb, 5)[0])
def fl():
    p = m(x1, x2); l = sum(m.loss_terms(p)); return l
print('fwd+loss', tm(fl, 5)[0])
