"""Where a method's training step spends its time: `torch.profiler` over a few steps after a warm-up, the top
operators by their own CPU time, and the step's phases (views, forward, loss, backward, optimiser, per-step work).

Usage (from the repository root):
  python -m experiments.profile_step densecl [--tier cpu] [--steps 4] [--warmup 2] [--top 25]
Writes `results/foundation/profile_<method>_<tier>.txt` (the tables) beside the throughput results.
"""
import argparse, time
from pathlib import Path

def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.profile_step', description=__doc__.split('\n')[0])
    ap.add_argument('method'); ap.add_argument('--tier', default='cpu'); ap.add_argument('--steps', type=int, default=4)
    ap.add_argument('--warmup', type=int, default=2); ap.add_argument('--top', type=int, default=25); ap.add_argument('--out')
    a = ap.parse_args()
    import torch
    from torch.profiler import profile, ProfilerActivity
    from fastai.callback.core import Callback, CancelFitException
    from ssl_learn.core import set_seed, provenance
    from ssl_learn.data import prepare_data
    from ssl_learn.learner import ssl_learner
    from ssl_learn.method import method_tier
    tier = method_tier(a.method, a.tier); set_seed(0)
    pre, *_ = prepare_data('fmnist', tier)
    learn = ssl_learner(pre, a.method, tier, device='cpu')

    class Phases(Callback):
        "Wall time of each phase of a training step (marks after every other callback), the profiler on after the warm-up."
        order = 100
        def before_fit(self): self.i, self.t, self.ph, self.prof = 0, None, {}, None
        def _mark(self, name):
            now = time.perf_counter()
            if self.t is not None and self.i >= a.warmup: self.ph[name] = self.ph.get(name, 0.) + now - self.t
            self.t = now
        def start(self):
            if self.i == a.warmup:
                self.prof = profile(activities=[ProfilerActivity.CPU]); self.prof.__enter__()
            self.t = time.perf_counter()
        def after_pred(self):
            if self.training: self._mark('views + forward')
        def after_loss(self):
            if self.training: self._mark('loss')
        def before_step(self):
            if self.training: self._mark('backward')
        def after_step(self):
            if self.training: self._mark('optimiser step + per-step work')
        def after_batch(self):
            if not self.training: return
            self.i += 1
            if self.i == a.warmup + a.steps:
                self.prof.__exit__(None, None, None); raise CancelFitException
    class Start(Callback):
        "Starts the step's clock before the method's callback makes the views."
        order = -20
        def before_batch(self):
            if self.training: self.learn.phases.start()
    ph = Phases(); learn.add_cbs([ph, Start()])
    with learn.no_bar(), learn.no_logging(): learn.fit(1, learn.lr)
    total = sum(ph.ph.values())
    lines = [f"# {a.method} at the {tier.name} tier: {a.steps} steps of {tier.bs} images after {a.warmup} warm-up steps",
             f"# {provenance()['commit']}, {provenance()['machine']['cpu']}, {torch.get_num_threads()} threads", '',
             'phase                              seconds/step   share']
    lines += [f"{k:34s} {v / a.steps:10.3f}   {100 * v / total:5.1f}%" for k, v in ph.ph.items()]
    lines += ['', ph.prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=a.top)]
    text = '\n'.join(lines)
    out = Path(a.out or f'results/foundation/profile_{a.method}_{tier.name}.txt')
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(text + '\n')
    print(text)

if __name__ == '__main__': main()
