"""The prepared GPU check (issue 20), for a person or CI with one CUDA GPU; about 3-5 minutes, under 10.

1. **Every method** a few training steps on CUDA, as `ssl_learn train` runs them there (mixed precision through fastai's
   `to_fp16`, channels_last weights and views): the loss is finite, the weights are finite, and the state the method
   keeps between steps (EMA encoders, queues, banks, memories) changed; peak GPU memory.
2. **kNN on CPU and GPU agree**: a backbone's features extracted on the CPU and on the GPU (max difference), and the
   kNN predictions of faiss on the CPU against a cosine top-k kNN computed with torch on the GPU (agreement).
3. **Throughput at the gpu tier**: ResNet-18 (width 64) on 32-px colour images (random uint8 pixels, the speed does
   not depend on them), global batch 512, mixed precision, channels_last, for supervised, SimCLR, MoCo v2 and BYOL:
   images/s over timed steps after a warm-up, FLOPs per image counted by `torch.utils.flop_counter.FlopCounterMode`
   over one whole training step (as `experiments.throughput` counts on the CPU), and GFLOP/s.

Writes `results/gpu/gpu_check.json` with provenance (GPU name, faiss backend). Without CUDA it says so and exits with
status 2, measuring nothing; `--device cpu --quick` runs the same code small on the CPU (no mixed precision), which is
how the tests check this script where there is no GPU.

Usage (from the repository root; or `bash scripts/gpu_check.sh`):
  python -m experiments.gpu_check [--out results/gpu/gpu_check.json] [--steps 4] [--device cuda] [--quick]
"""
import argparse, math, sys, time
from pathlib import Path
import torch

THROUGHPUT_METHODS = ('supervised', 'simclr', 'moco_v2', 'byol')

def _data(n, chans=1, side=28, seed=0):
    "Fashion-MNIST (its first `n` training images) if it is on this machine, else random uint8 images with 10 labels."
    from ssl_learn.data import ImageData, load_fmnist
    if chans == 1:
        try: return load_fmnist('train', download=False).subset(n), 'fmnist'
        except Exception: pass
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, chans, side, side), generator=g, dtype=torch.uint8)
    return ImageData(x, torch.randint(0, 10, (n,), generator=g), name='random'), 'random uint8'

class _Stop:
    "A fastai callback (built lazily) that counts training steps and stops the fit after `n`."
    def __new__(cls, n):
        from fastai.callback.core import Callback, CancelFitException
        class Stop(Callback):
            order = 100
            def before_fit(self): self.i, self.losses = 0, []
            def after_batch(self):
                if not self.training: return
                self.losses.append(float(self.loss.detach())); self.i += 1
                if self.i >= n: raise CancelFitException()
        return Stop()

def check_methods(device, steps, quick) -> dict:
    "Every method a few steps at the test tier on `device` (mixed precision on CUDA, by `ssl_learner`)."
    from ssl_learn.core import set_seed
    from ssl_learn.learner import ssl_learner
    from ssl_learn.method import list_methods
    data, src = _data(256 if quick else 1024)
    out = {}
    for m in list_methods():
        t0 = time.time()
        try:
            set_seed(0)
            if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()
            learn = ssl_learner(data, m, 'test', device=device, bs=32 if quick else 128)
            before = {k: v.detach().clone() for k, v in learn.model.state_dict().items()
                      if 'running_' not in k and 'num_batches' not in k}
            stop = _Stop(steps)
            with learn.no_bar(), learn.no_logging(): learn.fit(1, learn.lr, cbs=[stop])
            after = learn.model.state_dict()
            frozen = {n for n, p in learn.model.named_parameters() if not p.requires_grad}   # EMA copies, frozen parts
            kept = [k for k in before if k in frozen or k in dict(learn.model.named_buffers())]
            changed = sorted(k for k in kept if not torch.equal(before[k], after[k]))
            bad = [k for k, v in after.items() if v.is_floating_point() and not torch.isfinite(v).all()]
            out[m] = dict(ok=bool(stop.losses) and all(math.isfinite(l) for l in stop.losses) and not bad,
                          losses=[round(l, 4) for l in stop.losses], nonfinite_weights=bad[:5],
                          state_changed=len(changed), state_changed_names=changed[:8],
                          mixed_precision=hasattr(learn, 'mixed_precision'),
                          channels_last=next(learn.model.parameters()).is_contiguous(memory_format=torch.channels_last)
                          if next(learn.model.parameters()).ndim == 4 else None,
                          peak_memory_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                          if device.type == 'cuda' else None, seconds=round(time.time() - t0, 2))
        except Exception as e: out[m] = dict(ok=False, error=f"{type(e).__name__}: {e}"[:500])
        print(f"  {m:14s} {'ok' if out[m]['ok'] else 'FAILED'} {out[m].get('losses', out[m].get('error'))}", flush=True)
    return dict(data=src, steps=steps, methods=out, all_ok=all(r['ok'] for r in out.values()))

@torch.no_grad()
def torch_knn(train_f, train_y, test_f, k, T, n_classes):
    "Weighted cosine kNN with torch on the features' device (the GPU twin of `ssl_learn.features.knn_classify`)."
    a = torch.nn.functional.normalize(train_f.float(), dim=1); b = torch.nn.functional.normalize(test_f.float(), dim=1)
    sim, idx = (b @ a.T).topk(k, dim=1)
    votes = torch.zeros(len(b), n_classes, device=b.device)
    votes.scatter_add_(1, train_y.to(b.device)[idx], (sim / T).exp())
    return votes.argmax(1)

def check_knn(device, quick) -> dict:
    "Features on CPU vs `device`, and faiss-CPU kNN vs torch kNN on `device`."
    from ssl_learn.core import set_seed, get_tier
    from ssl_learn.features import extract_features, knn_classify
    from ssl_learn.models import make_backbone
    data, src = _data(512 if quick else 4096)
    n_tr = len(data) * 3 // 4
    set_seed(0); bb = make_backbone(get_tier('test'), data)
    f_cpu = extract_features(bb, data.x, 256, 'cpu')
    f_dev = extract_features(bb, data.x, 256, device)
    k, T, nc = 20, 0.07, int(data.y.max()) + 1
    p_faiss = knn_classify(f_cpu[:n_tr], data.y[:n_tr], f_cpu[n_tr:], ks=(k,), T=T, n_classes=nc)[k]
    p_torch = torch_knn(f_dev[:n_tr].to(device), data.y[:n_tr], f_dev[n_tr:].to(device), k, T, nc).cpu()
    acc = lambda p: float((p == data.y[n_tr:]).float().mean() * 100)
    agree = float((p_faiss == p_torch).float().mean() * 100)
    dmax = float((f_cpu - f_dev.cpu()).abs().max())
    return dict(data=src, n_train=n_tr, n_test=len(data) - n_tr, k=k, T=T, max_feature_diff=dmax,
                acc_faiss_cpu=acc(p_faiss), acc_torch_device=acc(p_torch), prediction_agreement_pct=agree,
                ok=dmax < 1e-2 and agree >= 99.0)

def throughput(device, method, steps, warmup, quick) -> dict:
    "Images/s and GFLOP/s of `method` at the gpu tier (ResNet-18 on 32-px colour images, batch 512)."
    from torch.utils.flop_counter import FlopCounterMode
    from fastai.callback.core import Callback, CancelFitException
    from ssl_learn.core import set_seed
    from ssl_learn.learner import ssl_learner
    from ssl_learn.method import method_tier
    bs = 32 if quick else 512
    tier = method_tier(method, 'gpu', bs=bs, width=16 if quick else 64, arch='resnet18')
    data, _ = _data(bs * (warmup + steps + 2), chans=3, side=32)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else (lambda: None)
    class Clock(Callback):
        order = -20
        def before_fit(self): self.i, self.flops, self.fc, self.t = 0, None, None, None
        def before_batch(self):
            if self.training and self.i == 0: self.fc = FlopCounterMode(display=False); self.fc.__enter__()
        def after_batch(self):
            if not self.training: return
            if self.fc is not None: self.fc.__exit__(None, None, None); self.flops, self.fc = self.fc.get_total_flops(), None
            self.i += 1
            if self.i == warmup: sync(); self.t = time.perf_counter()
            if self.i == warmup + steps:
                sync(); self.dt = time.perf_counter() - self.t; raise CancelFitException()
    set_seed(0)
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()
    learn = ssl_learner(data, method, tier, device=device)
    clock = Clock()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, learn.lr, cbs=[clock])
    ips = steps * bs / clock.dt
    return dict(method=method, bs=bs, arch=learn.model.backbone.config, steps=steps, warmup=warmup,
                images_per_s=round(ips, 1), gflop_per_image=round(clock.flops / bs / 1e9, 4),
                gflops=round(clock.flops / bs * ips / 1e9, 1), mixed_precision=hasattr(learn, 'mixed_precision'),
                peak_memory_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == 'cuda' else None)

def faiss_backend() -> str:
    try: import faiss
    except ImportError: return 'none'
    return 'gpu' if hasattr(faiss, 'StandardGpuResources') else 'cpu'

def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m experiments.gpu_check', description=__doc__.split('\n')[0])
    p.add_argument('--out', default='results/gpu/gpu_check.json')
    p.add_argument('--steps', type=int, default=4, help='training steps per method (part 1)')
    p.add_argument('--device', default='cuda', help="'cuda' (the check), or 'cpu' to rehearse the code path")
    p.add_argument('--quick', action='store_true', help='small sizes (a rehearsal on the CPU)')
    a = p.parse_args(argv)
    if a.device.startswith('cuda') and not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine (torch.cuda.is_available() is False): nothing was measured. "
              "Run it on a machine with an NVIDIA GPU and a CUDA build of torch; `--device cpu --quick` only "
              "rehearses the code on the CPU.", file=sys.stderr)
        sys.exit(2)
    from ssl_learn.core import atomic_save, provenance
    device = torch.device(a.device)
    t0 = time.time(); res = dict(device=str(device), quick=a.quick)
    print(f"== 1. every method, {a.steps} steps on {device}", flush=True)
    res['methods'] = check_methods(device, a.steps, a.quick)
    print("== 2. kNN on the CPU and on the device", flush=True)
    res['knn'] = check_knn(device, a.quick); print(f"  {res['knn']}", flush=True)
    print("== 3. throughput at the gpu tier", flush=True)
    res['throughput'] = {}
    for m in THROUGHPUT_METHODS:
        res['throughput'][m] = r = throughput(device, m, 3 if a.quick else 20, 1 if a.quick else 5, a.quick)
        print(f"  {m:10s} {r['images_per_s']} images/s, {r['gflops']} GFLOP/s", flush=True)
    res['seconds'] = round(time.time() - t0, 1)
    res['all_ok'] = res['methods']['all_ok'] and res['knn']['ok']
    gpu = dict(name=torch.cuda.get_device_name(device), cuda=torch.version.cuda) if device.type == 'cuda' else None
    atomic_save(dict(res, **provenance(gpu=gpu, faiss_backend=faiss_backend())), Path(a.out))
    print(f"all checks passed: {res['all_ok']}; {res['seconds']} s; wrote {a.out}")
    if not res['all_ok']: sys.exit(1)

if __name__ == '__main__': main()
