"""Choosing the dense protocols' cpu settings on validation scenes: one protocol run on a backbone, trained on the first
1,200 training scenes of the cpu FMNIST-Scenes (--n-train) and scored on the last 300 (--n-val); the test scenes are
not touched.

Usage (from the repository root):
  python -m experiments.dense_settings PROTOCOL EPOCHS BACKBONE [key=value ...]
  e.g. OMP_NUM_THREADS=1 python -m experiments.dense_settings seg 8 runs/sup/backbone.pth lr=0.05
PROTOCOL is det, inst or seg; BACKBONE a checkpoint path, 'random' (the zoo tier's untrained ResNet) or 'baseline' (the
non-learned threshold + connected components + kNN detector, scored on the same validation scenes); key=value
pairs go to the protocol function (lr, bs, ...). One seed (0). Each run appends one JSON line (metrics, seconds,
settings, provenance) to results/dense/settings_val.jsonl (--out).
"""
import argparse, ast, inspect, json, time
from pathlib import Path

def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.dense_settings', description=__doc__.split('\n')[0])
    ap.add_argument('protocol', choices=('det', 'inst', 'seg')); ap.add_argument('epochs', type=int)
    ap.add_argument('backbone'); ap.add_argument('kw', nargs='*', help='key=value settings for the protocol')
    ap.add_argument('--out', default='results/dense/settings_val.jsonl')
    ap.add_argument('--n-train', type=int, default=1200, help='training scenes: the first N of the 1,500')
    ap.add_argument('--n-val', type=int, default=300,
                    help='validation scenes: the last N of the 1,500 (so a smaller --n-train scores on the same ones)')
    a = ap.parse_args()
    import torch
    from ssl_learn.core import get_tier, set_seed, provenance
    from ssl_learn.data import load_fmnist
    from ssl_learn.models import make_backbone, load_backbone
    from ssl_learn.scenes import scene_benchmark
    from ssl_learn.eval.seg import seg_eval
    from ssl_learn.eval.det import det_eval, inst_eval, baseline_eval
    kw = {k: ast.literal_eval(v) for k, v in (x.split('=', 1) for x in a.kw)}   # bs=8 stays an int
    fn = dict(det=det_eval, inst=inst_eval, seg=seg_eval)[a.protocol]
    unknown = set(kw) - set(inspect.signature(fn).parameters) - {'_'}
    if unknown: ap.error(f"{a.protocol} takes no setting {sorted(unknown)} (it would be ignored)")
    bm = scene_benchmark('cpu'); set_seed(0)
    n = len(bm['voc_train'])
    if a.n_train < 1 or a.n_val < 1 or a.n_train + a.n_val > n:
        ap.error(f"--n-train {a.n_train} and --n-val {a.n_val} must be positive and add up to at most {n} scenes")
    split = lambda s: (s.subset(range(a.n_train)), s.subset(range(n - a.n_val, n)))
    (tr, va), (ctr, cva) = split(bm['voc_train']), split(bm['coco_train'])
    t = time.time()
    if a.backbone == 'baseline':
        rows = [r for r in baseline_eval(tr, va, cva, load_fmnist('train')) if r['protocol'] == a.protocol]
    else:
        bb = (make_backbone(get_tier('zoo'), load_fmnist('train')) if a.backbone == 'random'
              else load_backbone(a.backbone))
        rows = fn(bb, *((ctr, cva) if a.protocol == 'inst' else (tr, va)), epochs=a.epochs, seeds=(0,), **kw)
    rec = dict(protocol=a.protocol, epochs=a.epochs, backbone=a.backbone, settings=kw, seconds=round(time.time() - t),
               split=f'validation: training scenes {a.n_train}/{a.n_val}' + (f' (the last {a.n_val} of {n})'
                                                                            if a.n_train + a.n_val < n else ''),
               threads=torch.get_num_threads(),
               metrics={r['metric']: round(r['value'], 2) for r in rows}, **provenance())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, 'a') as f: f.write(json.dumps(rec) + '\n')
    print(json.dumps(rec['metrics']), f"{rec['seconds']} s")

if __name__ == '__main__': main()
