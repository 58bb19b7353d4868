"""kNN search time: faiss (exact inner product) against torch matmul + topk, on the same features of a backbone
over the full Fashion-MNIST (60,000 train, 10,000 test). Writes results/knn_search_cpu.json.

Usage: python scripts/bench_knn_search.py BACKBONE.pth [--k 200]
"""
import argparse
from ssl_learn.core import atomic_save, provenance
from ssl_learn.data import load_fmnist
from ssl_learn.models import load_backbone
from ssl_learn.eval import extract_features
from ssl_learn.evaluate import bench_knn_search

ap = argparse.ArgumentParser(); ap.add_argument('ckpt'); ap.add_argument('--k', type=int, default=200)
ap.add_argument('--out', default='results/knn_search_cpu.json'); a = ap.parse_args()
bb = load_backbone(a.ckpt)
ftr, fte = extract_features(bb, load_fmnist('train').x), extract_features(bb, load_fmnist('test').x)
r = bench_knn_search(ftr, fte, k=a.k)
print(f"{r['n_test']} queries × {r['n_train']} × {r['dim']} dims, k={r['k']}: faiss {r['faiss_s']:.2f} s, torch matmul+topk "
      f"{r['torch_s']:.2f} s ({r['speedup']:.1f}x), same neighbours {r['neighbour_overlap']:.3f}")
atomic_save(dict(result=r, backbone=a.ckpt, **provenance()), a.out)
