"""Relative-Loc's features at the scale it was trained on: held-out kNN of the zoo tier's kept backbones on whole images
resized to several sides.

At the zoo tier Relative-Loc trains on 16-px patches cut from images resized to 63 px, and every protocol evaluates it
on whole 28-px images; its kNN monitor fell below random init after the first epoch and stayed there. This asks
whether the features are poor, or poor only at the evaluation's scale: it extracts features of whole images resized
to each side (28 = the evaluation's, 63 = the side the patches were cut from) with the kept backbones of Relative-Loc,
Rotation (a pretext task trained on whole 28-px images) and a random init of the same architecture, and scores
weighted kNN (k=20, T=0.07) of held-out training images (the monitor's bank and query splits, never pre-trained on)
against a memory of pre-training images. The test split is not used.

Usage (from the repository root, after `ssl_learn bench --tier zoo` has kept the backbones):
  python -m experiments.relative_loc_scale [--sides 28,42,63] [--memory 10000]
                                           [--out results/ablations/relative_loc/scale_zoo.json]
"""
import argparse, time
from pathlib import Path

def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.relative_loc_scale', description=__doc__.split('\n')[0])
    ap.add_argument('--sides', default='28,42,63'); ap.add_argument('--memory', type=int, default=10000)
    ap.add_argument('--methods', default='relative_loc,rotation')
    ap.add_argument('--kept', default='results/bench/fmnist/zoo/backbones')
    ap.add_argument('--out', default='results/ablations/relative_loc/scale_zoo.json')
    a = ap.parse_args()
    import torch, torch.nn.functional as F
    from ssl_learn.core import get_tier, set_seed, provenance, atomic_save
    from ssl_learn.data import prepare_data
    from ssl_learn.models import make_backbone, load_backbone
    from ssl_learn.features import extract_features, knn_accuracy

    t0 = time.time(); tier = get_tier('zoo')
    pre, bank, query, _, _ = prepare_data('fmnist', tier)
    qx, qy = torch.cat([bank.x, query.x]), torch.cat([bank.y, query.y])   # every held-out image
    mem = pre.subset(min(a.memory, len(pre)), seed=0)
    set_seed(0); backbones = dict(random=make_backbone(tier, pre))
    for m in a.methods.split(','):
        f = Path(a.kept)/f'{m}.pth'
        if not f.exists(): raise SystemExit(f"{f}: no kept backbone; run `ssl_learn bench --tier zoo` first")
        backbones[m] = load_backbone(f).float()

    def resize(x, side):
        if side == x.shape[-1]: return x
        return F.interpolate(x.float(), size=(side, side), mode='bilinear', align_corners=False).round().clamp(0, 255) \
            .to(torch.uint8)

    rows = []
    for side in map(int, a.sides.split(',')):
        xm, xq = resize(mem.x, side), resize(qx, side)
        for name, bb in backbones.items():
            t = time.time()
            fm, fq = extract_features(bb, xm), extract_features(bb, xq)
            acc = knn_accuracy(fm, mem.y, fq, qy, ks=(20,), T=0.07)[20]
            rows.append(dict(side=side, backbone=name, knn20=round(acc, 2), seconds=round(time.time() - t, 1)))
            print(rows[-1], flush=True)
    res = dict(rows=rows, memory=len(mem), query=len(qy),
               split="memory: pre-training images; queries: the monitor's bank and query splits (held out from "
                     "pre-training); the test split is not used", seconds=round(time.time() - t0),
               **provenance(), threads=torch.get_num_threads())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); atomic_save(res, a.out)

if __name__ == '__main__': main()
