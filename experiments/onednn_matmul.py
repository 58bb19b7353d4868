"""Matrix products on the CPU: the BLAS (MKL in torch's wheels) against oneDNN's 1×1 convolution, the route
`ssl_learn.core.matmul_nt` takes.

For each shape M×K @ K×N (the queue losses' products, a ViT block's linear layers, a square product) this times, in
float32 (all threads, or `--threads`):
- the product alone: `a @ b.T` (the BLAS) and `matmul_nt(a, b)` (oneDNN), GFLOP/s and the largest relative
  difference between the two;
- a linear layer's forward and backward with autograd: `F.linear` against the same 1×1 convolution under autograd
  (what `core.linear` does for the ViT's layers; `results/foundation/vit_linear_ab.py` times whole steps both ways).
Windows alternate between the two and the median of `--repeats` is reported.

Usage (from the repository root):
  python -m experiments.onednn_matmul [--repeats 9] [--threads N] [--out results/foundation/onednn_matmul.json] [--lock /tmp/ssl_cpu.lock]
Writes the JSON (every figure, provenance) and a Markdown table beside it.
"""
import argparse, fcntl, json, statistics, time
from pathlib import Path

SHAPES = [  # (M, K, N, what)
    (4096, 128, 4096, "DenseCL's dense logits: 256 images × 16 locations against a 4096-key queue"),
    (4096, 4096, 128, "DenseCL's dense gradient P @ n"),
    (256, 128, 4096, "MoCo's logits: 256 queries against a 4096-key queue"),
    (12800, 96, 288, "ViT-Tiny/4 at 28 px (cpu tier), batch 256: qkv"),
    (12800, 96, 384, "the same ViT: MLP up"),
    (12800, 384, 96, "the same ViT: MLP down"),
    (4096, 4096, 4096, "square"),
]


def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.onednn_matmul', description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=9)
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    ap.add_argument('--out', default='results/foundation/onednn_matmul.json')
    ap.add_argument('--lock', default='/tmp/ssl_cpu.lock', help='held for the whole run (one heavy job at a time)')
    a = ap.parse_args()
    if a.repeats < 1: ap.error('--repeats must be at least 1')
    with open(a.lock, 'w') as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        run(a)


def run(a):
    import torch, torch.nn.functional as F
    from ssl_learn.core import matmul_nt, provenance
    if a.threads: torch.set_num_threads(a.threads)

    def conv_linear(x, w):   # F.linear(x, w) as a 1×1 convolution under autograd, laid out as matmul_nt lays it out
        (M, K), B = x.shape, 16 if x.shape[0] % 16 == 0 else 1
        y = F.conv2d(x.view(B, M // B, 1, K).permute(0, 3, 1, 2), w.view(w.shape[0], K, 1, 1))
        return y.permute(0, 2, 3, 1).reshape(M, w.shape[0])

    def timed(fns, repeats):
        "Median seconds of each of `fns` (dict), their windows alternating."
        for f in fns.values(): f()
        ts = {k: [] for k in fns}
        for r in range(repeats):
            for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                t = time.perf_counter(); fns[k](); ts[k].append(time.perf_counter() - t)
        return {k: statistics.median(v) for k, v in ts.items()}

    torch.manual_seed(0)
    rows, t0 = [], time.time()
    for M, K, N, what in SHAPES:
        x, w = torch.randn(M, K), torch.randn(N, K)
        ref = x @ w.t()
        diff = float((matmul_nt(x, w) - ref).abs().max() / ref.abs().max())
        fl = 2 * M * N * K
        reps = max(1, a.repeats // 3) if M * N * K > 1e10 else a.repeats
        s = timed(dict(blas=lambda: x @ w.t(), onednn=lambda: matmul_nt(x, w)), reps)
        xg, wg, g = x.clone().requires_grad_(), w.clone().requires_grad_(), torch.randn(M, N)
        sl = timed(dict(blas=lambda: F.linear(xg, wg).backward(g), onednn=lambda: conv_linear(xg, wg).backward(g)), reps)
        row = dict(M=M, K=K, N=N, what=what, rel_diff=diff,
                   product_gflops={k: round(fl / v / 1e9, 1) for k, v in s.items()},
                   product_ms={k: round(v * 1e3, 2) for k, v in s.items()},
                   linear_fwd_bwd_gflops={k: round(3 * fl / v / 1e9, 1) for k, v in sl.items()})
        rows.append(row); print(row, flush=True)
    res = dict(settings=dict(repeats=a.repeats, threads=torch.get_num_threads()), rows=rows,
               seconds=round(time.time() - t0, 1), **provenance())
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    lines = ['| M×K @ K×N | what | product: BLAS GFLOP/s | product: oneDNN (matmul_nt) GFLOP/s | speed-up | '
             'largest difference (relative) | linear fwd+bwd: BLAS GFLOP/s | linear fwd+bwd: 1×1 conv GFLOP/s |',
             '|---|---|---|---|---|---|---|---|']
    for r in rows:
        p, l = r['product_gflops'], r['linear_fwd_bwd_gflops']
        lines.append(f"| {r['M']}×{r['K']} @ {r['K']}×{r['N']} | {r['what']} | {p['blas']:.0f} | {p['onednn']:.0f} | "
                     f"{p['onednn'] / p['blas']:.2f}× | {r['rel_diff']:.1e} | {l['blas']:.0f} | {l['onednn']:.0f} |")
    m = res['machine']
    lines += ['', f"float32, {torch.get_num_threads()} thread(s), medians of alternating windows; {m['cpu']}, torch "
              f"{m['torch']}, BLAS: {'MKL' if torch.backends.mkl.is_available() else 'not MKL'}; commit {res['commit']}; "
              f"{res['time']}."]
    out.with_suffix('.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__': main()
