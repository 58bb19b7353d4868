"""DenseCL's training step at a tier with NegLogSumExp's products through oneDNN (core.matmul_nt, the library's) and
through the BLAS (`a @ b.T`), in one process, windows of steps alternating A B A B ..., each side's median and
the ratio of the medians. Run from the repository root: python results/foundation/densecl_onednn_ab.py [tier] [windows] [steps]"""
import sys, time, statistics, torch
from fastai.callback.core import Callback, CancelFitException
import ssl_learn.losses as L
from ssl_learn.core import set_seed, provenance
from ssl_learn.data import prepare_data
from ssl_learn.learner import ssl_learner
from ssl_learn.method import method_tier
tier_name = sys.argv[1] if len(sys.argv) > 1 else 'cpu'
W = int(sys.argv[2]) if len(sys.argv) > 2 else 7; S = int(sys.argv[3]) if len(sys.argv) > 3 else 6
tier = method_tier('densecl', tier_name); set_seed(0)
pre, *_ = prepare_data('fmnist', tier)
learn = ssl_learner(pre, 'densecl', tier, device='cpu')
class Win(Callback):
    order = -20
    def before_fit(self): self.i, self.t = 0, None
    def before_batch(self):
        if self.i == 2: self.t = time.perf_counter()        # 2 warm-up steps per window
    def after_batch(self):
        self.i += 1
        if self.i == 2 + S: self.dt = (time.perf_counter() - self.t) / S; raise CancelFitException
learn.add_cb(Win())
routes = {'onednn': L.matmul_nt, 'blas': lambda a, b: a @ b.t()}
T = {k: [] for k in routes}
for w in range(W):
    for k in (('onednn', 'blas') if w % 2 == 0 else ('blas', 'onednn')):
        L.matmul_nt = routes[k]
        with learn.no_bar(), learn.no_logging(): learn.fit(1)
        T[k].append(learn.win.dt)
L.matmul_nt = routes['onednn']
med = {k: statistics.median(v) for k, v in T.items()}
print(f"densecl, {tier_name} tier, batch {tier.bs}, {W} windows of {S} steps each way, alternating; {torch.get_num_threads()} threads")
for k in T: print(f"  {k:6s}: median {med[k]*1e3:.1f} ms/step, {tier.bs/med[k]:.0f} images/s; windows (ms) {[round(x*1e3, 1) for x in T[k]]}")
print(f"  step time oneDNN / BLAS: {med['onednn'] / med['blas']:.3f}")
p = provenance(); print(f"  commit {p['commit']}, {p['machine']['cpu']}, {p['time']}")
