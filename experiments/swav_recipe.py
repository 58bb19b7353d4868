"""SwAV's recipe on 28-px grey images: a screening of the levers that could move it off the uniform prediction.

In the tier study SwAV's loss sat at ln K from the first epoch (lightly's SwAV did the same at the cpu tier): every
crop predicts the uniform distribution over the K prototypes, a fixed point of the swapped prediction (with
equipartitioned codes, a prediction that ignores the image scores exactly ln K). This screens one lever at a time
against the zoo tier's recipe: the temperature, the Sinkhorn epsilon, the learning rate, the number of prototypes, the
small crops, the prototype freeze and the crop scales. Each configuration pre-trains the zoo tier's ResNet-18 (width
16) on `--n` pre-training images for `--epochs` epochs, and reports the loss per eighth of training beside ln K and the
kNN top-1 (k=20) of the held-out query images against the held-out bank (the zoo tier's monitor split: training
images never pre-trained on; the test split is not read), with a random init on the same split as the floor.
One JSON line per configuration in `--out`; configurations already there are skipped.

Usage (from the repository root):
  python -m experiments.swav_recipe [--only base,T0.05] [--n 16384] [--epochs 2]
                                    [--out results/study/swav_recipe_val.jsonl]
"""
import argparse, json, math, time
from pathlib import Path

CONFIGS = {   # name: (method_kw, lr); None: the tier's
    'base': ({}, None),
    'T0.05': (dict(T=0.05), None),
    'T0.2': (dict(T=0.2), None),
    'eps0.03': (dict(eps=0.03), None),
    'lr0.2': ({}, 0.2),
    'lr0.01': ({}, 0.01),
    'K10': (dict(n_prototypes=10), None),
    'K300': (dict(n_prototypes=300), None),
    'no_small': (dict(n_small=0), None),
    'freeze0.3': (dict(freeze_frac=0.3), None),
    'crop35': (dict(large_scale=(0.35, 1.0), small_scale=(0.15, 0.35)), None),
}

def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.swav_recipe', description=__doc__.split('\n')[0])
    ap.add_argument('--only', default=','.join(CONFIGS)); ap.add_argument('--n', type=int, default=16384)
    ap.add_argument('--epochs', type=int, default=2)
    ap.add_argument('--out', default='results/study/swav_recipe_val.jsonl')
    a = ap.parse_args()
    import torch
    from ssl_learn.core import get_tier, set_seed, provenance
    from ssl_learn.data import prepare_data
    from ssl_learn.learner import ssl_learner
    from ssl_learn.models import make_backbone
    from ssl_learn.features import extract_features, knn_accuracy

    bad = [c for c in a.only.split(',') if c not in CONFIGS and c != 'random']
    if bad: raise SystemExit(f"unknown configuration(s) {bad}; known: random, {', '.join(CONFIGS)}")
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(l)['name'] for l in out.read_text().splitlines() if l.strip()} if out.exists() else set()
    tier = get_tier('zoo')
    pre, bank, query, _, _ = prepare_data('fmnist', tier)
    sub = pre.subset(min(a.n, len(pre)), seed=0, balanced=False)
    knn = lambda bb: knn_accuracy(extract_features(bb, bank.x), bank.y, extract_features(bb, query.x), query.y,
                                  ks=(20,), T=0.07)[20]
    prov = {k: v for k, v in provenance().items()}
    for name in ['random'] + [c for c in a.only.split(',') if c != 'random']:
        if name in done: print(f"{name}: done before", flush=True); continue
        set_seed(0); t = time.time()
        if name == 'random':
            row = dict(name=name, knn20=round(knn(make_backbone(tier, sub)), 2))
        else:
            kw, lr = CONFIGS[name]
            learn = ssl_learner(sub, 'swav', tier, method_kw=kw, device='cpu', **({'lr': lr} if lr else {}))
            with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(a.epochs, learn.lr)
            L = [float(v) for v in learn.recorder.losses]; step = max(1, len(L) // 8)
            lnk = math.log(kw.get('n_prototypes', 50))
            row = dict(name=name, method_kw={k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()},
                       lr=learn.lr, lnK=round(lnk, 4), loss=[round(sum(L[i:i + step]) / len(L[i:i + step]), 4)
                                                             for i in range(0, len(L), step)],
                       final_gap=round(sum(L[-step:]) / step - lnk, 4), knn20=round(knn(learn.model.backbone), 2))
        row.update(seconds=round(time.time() - t, 1), n_pretrain=len(sub), epochs=a.epochs, bank=len(bank),
                   query=len(query), threads=torch.get_num_threads(), **prov)
        with open(out, 'a') as f: f.write(json.dumps(row) + '\n')
        print({k: row[k] for k in ('name', 'knn20', 'seconds') if k in row}, row.get('final_gap'), flush=True)

if __name__ == '__main__': main()
