"""k-means with faiss against scikit-learn's KMeans on the same features: DeepCluster's preprocessed features
(PCA-whitened to 64 dimensions, L2-normalised) of the cpu tier's 16,384 training images, k=100, from the cpu-tier
DeepCluster backbone if it exists (runs/fmnist/cpu/deepcluster/backbone.pth, where `ssl_learn bench --tier cpu`
pre-trains it; the older runs/deepcluster_cpu/backbone.pth is still read), else a random-init backbone. Times the
clustering alone (features computed once) and compares inertia (sum of squared distances to the assigned
centroid, computed the same way for both). Writes results/foundation/kmeans_faiss_vs_sklearn.json.

faiss is run with several iteration counts (DeepCluster uses 20) so that the speed-up can also be read at equal or
lower inertia than scikit-learn's defaults.

Run it from the repository root under the machine-wide lock:  flock /tmp/ssl_cpu.lock .venv/bin/python -m experiments.bench_kmeans
"""
import argparse, json, time
from pathlib import Path
import numpy as np, torch
from ssl_learn.core import get_tier, set_seed, provenance, atomic_save
from ssl_learn.data import prepare_data
from ssl_learn.models import make_backbone
from ssl_learn.models import load_backbone
from ssl_learn.features import extract_features
from ssl_learn.cluster import preprocess_features, kmeans

ap = argparse.ArgumentParser(prog='python -m experiments.bench_kmeans', description=__doc__.split('\n')[0])
ap.add_argument('--k', type=int, default=100); ap.add_argument('--pca', type=int, default=64)
ap.add_argument('--seeds', type=int, default=5); ap.add_argument('--n', type=int, default=None, help='first n images only (a smoke test)'); ap.add_argument('--out', default='results/foundation/kmeans_faiss_vs_sklearn.json')
a = ap.parse_args()
tier = get_tier('cpu')
pre, *_ = prepare_data('fmnist', tier)
if a.n: pre = pre.subset(a.n, seed=0, balanced=False)
bbp = next((p for p in (Path('runs/fmnist/cpu/deepcluster/backbone.pth'), Path('runs/deepcluster_cpu/backbone.pth')) if p.exists()), None)
set_seed(0)
bb, src = (load_backbone(bbp), str(bbp)) if bbp is not None else (make_backbone(tier, pre), 'random init (cpu-tier ResNet-18, width 32)')
f = extract_features(bb, pre.x, 512)
x, _ = preprocess_features(f, a.pca)
xn = np.ascontiguousarray(x.numpy())

def inertia(lab, cen):
    return float(((x - torch.as_tensor(cen, dtype=torch.float)[torch.as_tensor(lab, dtype=torch.long)]) ** 2).sum())

runs = []
FAISS = [dict(niter=20, nredo=1), dict(niter=50, nredo=1), dict(niter=50, nredo=3), dict(niter=20, nredo=1, init='k-means++'), dict(niter=50, nredo=1, init='k-means++')]
for cfg in FAISS:
    for s in range(a.seeds):
        r = kmeans(x, a.k, seed=s, **cfg)
        runs.append(dict(impl='faiss', settings=f"niter={cfg['niter']}, nredo={cfg['nredo']}, {cfg.get('init', 'random')} init" + (' (DeepCluster)' if cfg == FAISS[0] else ''),
                         seed=s, seconds=r['seconds'], inertia=inertia(r['labels'], r['centroids'])))
from sklearn.cluster import KMeans
for s in range(a.seeds):
    t = time.time(); km = KMeans(a.k, n_init=1, random_state=s).fit(xn); dt = time.time() - t
    runs.append(dict(impl='scikit-learn', settings='KMeans defaults: k-means++, max_iter=300, tol=1e-4, n_init=1', seed=s,
                     seconds=dt, inertia=inertia(km.labels_, km.cluster_centers_), n_iter=int(km.n_iter_)))
for s in range(a.seeds):
    t = time.time(); km = KMeans(a.k, n_init=1, init='random', max_iter=20, tol=0, random_state=s).fit(xn); dt = time.time() - t
    runs.append(dict(impl='scikit-learn', settings="faiss's DeepCluster settings: random init, max_iter=20, tol=0", seed=s,
                     seconds=dt, inertia=inertia(km.labels_, km.cluster_centers_), n_iter=int(km.n_iter_)))

def summary(rs):
    "median seconds and mean inertia over seeds, one row per (impl, settings), in order of appearance"
    out = {}
    for r in rs: out.setdefault((r['impl'], r['settings']), []).append(r)
    return [dict(impl=i, settings=st, seconds=float(np.median([r['seconds'] for r in v])), inertia=float(np.mean([r['inertia'] for r in v])),
                 n_seeds=len(v)) for (i, st), v in out.items()]

rows = summary(runs)
fa = rows[0]; sk = next(r for r in rows if r['settings'].startswith('KMeans defaults')); sk20 = rows[-1]
ok = [r for r in rows if r['impl'] == 'faiss' and r['inertia'] <= sk['inertia']]
best = min(ok, key=lambda r: r['seconds']) if ok else None
res = dict(n=len(xn), dim=xn.shape[1], k=a.k, features=f'DeepCluster preprocessing (PCA-whiten {f.shape[1]}→{a.pca}, L2) of {src}',
           threads=torch.get_num_threads(), runs=rows, all_runs=runs,
           speedup=sk['seconds'] / fa['seconds'], inertia_ratio=fa['inertia'] / sk['inertia'],
           speedup_vs_same_settings=sk20['seconds'] / fa['seconds'], inertia_ratio_vs_same_settings=fa['inertia'] / sk20['inertia'],
           fastest_faiss_at_equal_or_lower_inertia=None if best is None else dict(settings=best['settings'], seconds=best['seconds'],
               inertia=best['inertia'], speedup=sk['seconds'] / best['seconds'], inertia_ratio=best['inertia'] / sk['inertia']),
           **provenance())
atomic_save(res, a.out)
for r in rows: print(f"{r['impl']:13s} {r['settings']:55s} {r['seconds']:8.3f} s  inertia {r['inertia']:.1f}")
print(f"faiss (DeepCluster settings) vs sklearn defaults: {res['speedup']:.1f}x faster, inertia ratio {res['inertia_ratio']:.4f}; "
      f"vs sklearn with faiss's settings: {res['speedup_vs_same_settings']:.1f}x, {res['inertia_ratio_vs_same_settings']:.4f}")
print('fastest faiss at equal or lower inertia than sklearn defaults:', res['fastest_faiss_at_equal_or_lower_inertia'])
