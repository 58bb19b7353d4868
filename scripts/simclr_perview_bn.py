"""Ablation: our SimCLR with each view through the backbone separately (BN statistics per view, as lightly's loop does) instead of one concatenated batch; the same data, seed, schedule and kNN as scripts/compare_lightly.py.

Usage: python scripts/simclr_perview_bn.py 0,1 results/simclr_perview_bn_ablation.json   (seeds, output file)
"""
import sys, json, time, torch
sys.path.insert(0, str(__import__('pathlib').Path(__file__).parent))
import compare_lightly as cl
from ssl_learn.core import get_tier, provenance
from ssl_learn.data import get_data
from ssl_learn.learner import prepare_data
from ssl_learn.eval import knn_eval
from ssl_learn.methods.simclr import SimCLR
from simclr_aug_ablation import per_view      # one backbone pass per view (simclr_aug_ablation.py's 'perview' variant runs the same)
out = {}
for seed in map(int, sys.argv[1].split(',')):
    SimCLR.forward = per_view
    tier = get_tier('cpu', epochs=3, bs=256, n_train=8192)
    pre = prepare_data('fmnist', tier, seed=seed)[0]
    trn, tst = get_data('fmnist'); trn, tst = trn.subset(20000, seed=0), tst.subset(4000, seed=0)
    r = cl.run_ours(cl.METHODS['simclr'], pre, tier, seed)
    knn = {x['k']: x['value'] for x in knn_eval(r['backbone'], trn, tst, ks=(20, 200))}
    out[seed] = dict(knn_top1=knn, per_epoch=r['epochs'])
    print(seed, knn, flush=True)
json.dump(dict(variant='simclr, one backbone pass per view (BN statistics per view)', results=out, **provenance()), open(sys.argv[2], 'w'), indent=1)
