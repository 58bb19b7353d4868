"""kNN search time: faiss (exact inner product) against torch matmul + topk, on the same features of a backbone
over the full Fashion-MNIST (60,000 train, 10,000 test). Writes results/foundation/knn_search_cpu.json.

Usage (from the repository root): python -m experiments.bench_knn_search BACKBONE.pth [--k 200]
"""
import argparse, time
import torch, torch.nn.functional as F
from ssl_learn.core import atomic_save, provenance
from ssl_learn.data import load_fmnist
from ssl_learn.models import load_backbone
from ssl_learn.features import extract_features


def bench_knn_search(train_f: torch.Tensor, test_f: torch.Tensor, k: int = 200, chunk: int = 1000) -> dict:
    "Seconds of an exact top-`k` cosine search with faiss vs torch matmul+topk, and the fraction of equal neighbour sets."
    import faiss, numpy as np
    tr = F.normalize(train_f.float(), dim=1); te = F.normalize(test_f.float(), dim=1)
    t0 = time.time()
    idx = faiss.IndexFlatIP(tr.shape[1]); idx.add(np.ascontiguousarray(tr.numpy()))
    _, I_f = idx.search(np.ascontiguousarray(te.numpy()), k)
    t1 = time.time()
    I_t = torch.cat([(te[i:i+chunk] @ tr.T).topk(k, dim=1).indices for i in range(0, len(te), chunk)])
    t2 = time.time()
    same = np.mean([len(set(a) & set(b)) / k for a, b in zip(I_f[:200].tolist(), I_t[:200].tolist())])
    return dict(n_train=len(tr), n_test=len(te), dim=tr.shape[1], k=k, faiss_s=t1-t0, torch_s=t2-t1,
                speedup=(t2-t1)/(t1-t0), neighbour_overlap=float(same), threads=torch.get_num_threads())


def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.bench_knn_search', description=__doc__.split('\n')[0])
    ap.add_argument('ckpt'); ap.add_argument('--k', type=int, default=200)
    ap.add_argument('--out', default='results/foundation/knn_search_cpu.json'); a = ap.parse_args()
    bb = load_backbone(a.ckpt)
    ftr, fte = extract_features(bb, load_fmnist('train').x), extract_features(bb, load_fmnist('test').x)
    r = bench_knn_search(ftr, fte, k=a.k)
    print(f"{r['n_test']} queries × {r['n_train']} × {r['dim']} dims, k={r['k']}: faiss {r['faiss_s']:.2f} s, torch matmul+topk "
          f"{r['torch_s']:.2f} s ({r['speedup']:.1f}x), same neighbours {r['neighbour_overlap']:.3f}")
    atomic_save(dict(result=r, backbone=a.ckpt, **provenance()), a.out)


if __name__ == '__main__':
    main()
