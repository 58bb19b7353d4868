"""DeepCluster's clustering pass in bfloat16: does a bf16 feature extraction give the clustering a float32 one gives?

A learner trained with `precision='bf16'` now extracts DeepCluster's (and ODC's initial) clustering features in
bfloat16 too (`core.forward_precision`). For a randomly initialised backbone (what DeepCluster's first epoch
clusters) and the kept zoo DeepCluster backbone, on the zoo tier's pre-training images, this times the feature
extraction in float32 and in bfloat16 (alternating), clusters the images with `DeepCluster.cluster` itself (the zoo
tier's DeepCluster: PCA-whitening to 64 dimensions, k-means with k=100, 20 iterations) from each, and compares:
- NMI between the float32 and the bfloat16 clustering with the same k-means seed;
- NMI between two float32 clusterings with different seeds (how much k-means itself moves: the yardstick);
- each clustering's NMI with the true classes.

Usage (from the repository root):
  python -m experiments.cluster_bf16 [--repeats 2] [--out results/foundation/cluster_bf16.json] [--lock /tmp/ssl_cpu.lock]
Writes the JSON (every figure, provenance) and a Markdown table beside it.
"""
import argparse, fcntl, json, statistics, time
from pathlib import Path

def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.cluster_bf16', description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=2, help='timed extractions per precision (alternating)')
    ap.add_argument('--backbone', default='results/bench/fmnist/zoo/backbones/deepcluster.pth')
    ap.add_argument('--out', default='results/foundation/cluster_bf16.json')
    ap.add_argument('--lock', default='/tmp/ssl_cpu.lock', help='held for the whole run (one heavy job at a time)')
    a = ap.parse_args()
    if a.repeats < 1: ap.error('--repeats must be at least 1')
    with open(a.lock, 'w') as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        run(a)

def run(a):
    import torch
    from ssl_learn.core import bf16_supported, provenance, set_seed
    from ssl_learn.data import prepare_data
    from ssl_learn.models import load_backbone, make_backbone
    from ssl_learn.method import method_tier, get_method
    from ssl_learn.features import extract_features
    from ssl_learn.cluster import nmi
    if not bf16_supported(): raise SystemExit('this CPU has no bfloat16 hardware: nothing to compare')
    tier = method_tier('deepcluster', 'zoo')
    pre, *_ = prepare_data('fmnist', tier)
    set_seed(0)
    nets = {'random init': make_backbone(tier, pre)}
    if Path(a.backbone).exists(): nets['deepcluster (zoo)'] = load_backbone(a.backbone).float()
    rows, t0 = {}, time.time()
    for name, bb in nets.items():
        secs, feats = {'fp32': [], 'bf16': []}, {}
        for r in range(a.repeats):
            for p in (('fp32', 'bf16') if r % 2 == 0 else ('bf16', 'fp32')):
                t = time.perf_counter(); feats[p] = extract_features(bb, pre.x, 512, 'cpu', precision=p)
                secs[p].append(time.perf_counter() - t)
        model, _ = get_method('deepcluster')['builder'](backbone=bb, size=pre.shape[-1], tier=tier, data=pre)
        lab = {}
        for p, seed in (('fp32', 0), ('bf16', 0), ('fp32', 1)):   # DeepCluster's own pass: PCA, L2, k-means
            model.cluster(pre.x, seed=seed, device='cpu', precision=p); lab[p, seed] = model.labels.clone()
        rows[name] = dict(
            nmi_fp32_bf16_same_seed=round(nmi(lab['fp32', 0], lab['bf16', 0]), 4),
            nmi_fp32_two_seeds=round(nmi(lab['fp32', 0], lab['fp32', 1]), 4),
            nmi_classes=dict(fp32=round(nmi(lab['fp32', 0], pre.y), 4), bf16=round(nmi(lab['bf16', 0], pre.y), 4)),
            feature_rel_diff=round(float((feats['bf16'] - feats['fp32']).norm() / feats['fp32'].norm()), 5),
            seconds={p: round(statistics.median(s), 2) for p, s in secs.items()},
            speedup=round(statistics.median(secs['fp32']) / statistics.median(secs['bf16']), 2))
        print(name, rows[name], flush=True)
    res = dict(settings=dict(tier='zoo', images=len(pre), pca_dim=model.pca_dim, k=model.k, niter=model.niter,
                             repeats=a.repeats,
                             threads=torch.get_num_threads(), backbone=a.backbone),
               rows=rows, seconds=round(time.time() - t0, 1), **provenance())
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    lines = ['| backbone | NMI fp32 vs bf16 (same seed) | NMI fp32, seed 0 vs 1 | NMI with classes fp32 / bf16 | '
             'feature difference (relative) | extraction s fp32 / bf16 | speed-up |', '|---|---|---|---|---|---|---|']
    for m, r in rows.items():
        lines.append(f"| {m} | {r['nmi_fp32_bf16_same_seed']:.3f} | {r['nmi_fp32_two_seeds']:.3f} | "
                     f"{r['nmi_classes']['fp32']:.3f} / {r['nmi_classes']['bf16']:.3f} | {r['feature_rel_diff']:.1e} | "
                     f"{r['seconds']['fp32']:.1f} / {r['seconds']['bf16']:.1f} | {r['speedup']:.2f}× |")
    lines += ['', f"{len(pre)} images, {torch.get_num_threads()} thread(s); commit {res.get('commit')}; {res.get('time')}."]
    out.with_suffix('.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))

if __name__ == '__main__': main()
