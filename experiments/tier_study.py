"""What makes self-supervised pre-training show on a 2-core machine: learning curves on a validation split.

Every run pre-trains on the Fashion-MNIST training images *minus* a held-out validation split, and is measured only on
that split (the test split is never read here):
- the held-out split is `n_monitor * 1.25` training images (`ssl_learn.data.prepare_data`): a labeled bank of
  `n_monitor` images and a query set of the rest;
- **per epoch**: kNN top-1 (k=20, T=0.07) of the query against the bank, from the training's own monitor, and the
  epoch's wall time;
- **at the end of the run**: linear AvgPool top-1 (a linear layer trained on the bank's frozen features, tested on the
  query; 10 epochs, one seed) and low-shot SVM top-1 at k=8 per class (3 samplings) on the same split.

Baselines on the same split: random init of each architecture, raw pixels, and the supervised method trained at the
same budget. Each configuration (one entry of `CONFIGS`) is a run directory under `--runs` that checkpoints every
epoch and resumes, and a result file `results/study/<name>.json` (command, machine, commit); finished ones are skipped,
so the study can be stopped and restarted at will.

Usage (from the repository root):
  python -m experiments.tier_study [--only a,b] [--runs runs/study] [--out results/study] [--lock /tmp/ssl_cpu.lock]
"""
import argparse, fcntl, json, sys, time
from pathlib import Path

N_MONITOR = 8000    # held-out split: 8000 labeled bank + 2000 query images, 50000 left for pre-training
BASE = dict(n_train=60000, n_monitor=N_MONITOR)

# name: (method, epochs, tier overrides, method_kw, lr); the order is the order they run in
CONFIGS = {
    # the current recipes, 4 epochs of 50000 images (4x the cpu tier's images per epoch, 4x its images in all)
    'supervised_e4':   ('supervised', 4, {}, {}, None),
    'rotation_e4':     ('rotation', 4, {}, {}, None),
    'simclr_e4':       ('simclr', 4, {}, {}, None),
    'moco_v2_e4':      ('moco_v2', 4, {}, {}, None),
    'byol_e4':         ('byol', 4, {}, {}, None),
    'swav_e4':         ('swav', 4, {}, {}, None),
    'mae_e4':          ('mae', 4, {}, {}, None),
    # recipe levers for 28-px grey images
    'byol_e4_crop35':  ('byol', 4, {}, dict(crop_scale=(0.35, 1.0)), None),
    'byol_e4_lr0.2':   ('byol', 4, {}, {}, 0.2),
    'swav_e4_crop':    ('swav', 4, {}, dict(large_scale=(0.35, 1.0), small_scale=(0.15, 0.35)), None),
    'mae_e4_mask50':   ('mae', 4, {}, dict(mask_ratio=0.5), None),
    # the network's width: a narrower ResNet sees more images in the same seconds
    'simclr_e8_w16':   ('simclr', 8, dict(width=16), {}, None),
    'byol_e8_w16':     ('byol', 8, dict(width=16), {}, None),
}
# random init of each architecture the configurations use (name: tier overrides, arch)
RANDOM = {'random_w32': (dict(), None), 'random_w16': (dict(width=16), None), 'random_vit': (dict(), 'vit_tiny')}


def provenance_of(cmd):
    from ssl_learn.core import provenance
    return {**provenance(), "command": cmd}


def curve_of(history) -> list:
    "Per epoch: validation kNN, the epoch's seconds and the training loss (and any method metric, e.g. SwAV's)."
    keep = ('train_loss', 'proto_ppl', 'emb_std', 'acc')
    return [dict(epoch=h['epoch'] + 1, knn20=h.get('knn20', h.get('knn')), seconds=h.get('seconds_epoch'),
                 **{k: h[k] for k in keep if k in h}) for h in history]


def refresh_curves(runs:Path, out:Path):
    "Rebuild each result file's curve from its run's train.json (for files written before the curve kept the loss)."
    for f in sorted(out.glob('*.json')):
        r = json.loads(f.read_text()); t = runs/r['name']/'train.json'
        if 'curve' in r and t.exists():
            r['curve'] = curve_of(json.loads(t.read_text())['history']); f.write_text(json.dumps(r, indent=1))


def evaluate_val(backbone, bank, query, seconds_note=None) -> dict:
    "kNN k=20, linear AvgPool and low-shot k=8 on the validation split."
    from ssl_learn.features import extract_features, knn_accuracy
    from ssl_learn.eval.linear import linear_eval
    from ssl_learn.eval.svm import lowshot_eval
    t0 = time.time()
    fb, fq = extract_features(backbone, bank.x), extract_features(backbone, query.x)
    knn = knn_accuracy(fb, bank.y, fq, query.y, ks=(20,))
    lin = linear_eval(backbone, bank, query, epochs=10, seeds=(0,))
    low = lowshot_eval(backbone, bank, query, ks=(8,), n_samples=3, cost=1.0)
    row = lambda rs: rs[0] if isinstance(rs, list) else rs
    return dict(knn20=float(knn[20] if 20 in knn else list(knn.values())[0]), linear=row(lin), lowshot8=row(low),
                seconds_eval=round(time.time() - t0, 1))


def run_config(name, spec, runs:Path, out:Path, cmd):
    from ssl_learn.core import set_seed
    from ssl_learn.data import prepare_data
    from ssl_learn.learner import train
    from ssl_learn.method import method_tier
    from ssl_learn.models import load_backbone
    method, epochs, tier_kw, method_kw, lr = spec
    kw = dict(BASE, **tier_kw)
    print(f"== {name}: {method}, {epochs} epochs, {kw}, {method_kw}, lr {lr}", flush=True)
    s = train(method, 'fmnist', 'cpu', out=runs/name, epochs=epochs, method_kw=method_kw or None, lr=lr, **kw)
    tier = method_tier(method, 'cpu', epochs=epochs, **kw)
    set_seed(0)
    _, bank, query, _, _ = prepare_data('fmnist', tier, 0)
    bb = load_backbone(runs/name/'backbone.pth')
    res = dict(name=name, method=method, epochs=epochs, tier_overrides=kw, method_kw=method_kw, lr=lr,
               n_pretrain=s['n_pretrain'], n_bank=len(bank), n_query=len(query),
               curve=curve_of(s['history']), random_init_monitor=s.get('random_init_monitor'),
               seconds_pretrain=s['seconds'], final=evaluate_val(bb, bank, query), **provenance_of(cmd))
    (out/f'{name}.json').write_text(json.dumps(res, indent=1, default=str))
    return res


def run_random(name, spec, out:Path, cmd):
    from ssl_learn.core import set_seed
    from ssl_learn.data import prepare_data
    from ssl_learn.method import method_tier
    from ssl_learn.models import make_backbone
    tier_kw, arch = spec
    kw = dict(BASE, **tier_kw)
    tier = method_tier('supervised', 'cpu', arch=arch, **kw)
    set_seed(0)
    pre, bank, query, _, _ = prepare_data('fmnist', tier, 0)
    set_seed(0)
    bb = make_backbone(tier, pre)
    res = dict(name=name, arch=bb.config, tier_overrides=kw, n_bank=len(bank), n_query=len(query),
               final=evaluate_val(bb, bank, query), **provenance_of(cmd))
    (out/f'{name}.json').write_text(json.dumps(res, indent=1, default=str))


def run_pixels(out:Path, cmd):
    from torch import nn
    from ssl_learn.core import set_seed
    from ssl_learn.data import prepare_data
    from ssl_learn.method import method_tier
    tier = method_tier('supervised', 'cpu', **BASE)
    set_seed(0)
    _, bank, query, _, _ = prepare_data('fmnist', tier, 0)
    class Pixels(nn.Module):   # the raw image as the "feature map": AvgPool of a 1x1 map is the flat image
        config = {}
        def forward(self, x): return (x.float() / 255).flatten(1)
    from ssl_learn.features import knn_accuracy
    from ssl_learn.eval.linear import linear_eval
    f = lambda d: (d.x.float() / 255).flatten(1)
    knn = knn_accuracy(f(bank), bank.y, f(query), query.y, ks=(20,))
    try: lin = linear_eval(Pixels(), bank, query, epochs=10, seeds=(0,))
    except Exception as e: lin = dict(error=repr(e))
    res = dict(name='pixels', n_bank=len(bank), n_query=len(query),
               final=dict(knn20=float(knn[20]), linear=lin[0] if isinstance(lin, list) else lin), **provenance_of(cmd))
    (out/'pixels.json').write_text(json.dumps(res, indent=1, default=str))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--only', default=None, help='comma-separated configuration names (default: all, in order)')
    p.add_argument('--runs', default='runs/study')
    p.add_argument('--out', default='results/study')
    p.add_argument('--lock', default=None)
    p.add_argument('--list', action='store_true', help='list the configurations and exit')
    p.add_argument('--refresh-curves', action='store_true', help="rebuild the result files' curves from the runs")
    a = p.parse_args(argv)
    if a.list:
        for k, v in {**RANDOM, **CONFIGS}.items(): print(k, v)
        return
    cmd = 'python -m experiments.tier_study ' + ' '.join(sys.argv[1:] if argv is None else argv)
    out, runs = Path(a.out), Path(a.runs)
    if a.refresh_curves: refresh_curves(runs, out); return
    out.mkdir(parents=True, exist_ok=True); runs.mkdir(parents=True, exist_ok=True)
    if a.lock:
        lk = open(a.lock, 'w'); fcntl.flock(lk, fcntl.LOCK_EX)
    names = a.only.split(',') if a.only else ['pixels', *RANDOM, *CONFIGS]
    for n in names:
        if (out/f'{n}.json').exists(): print(f"== {n}: done before", flush=True); continue
        t0 = time.time()
        if n == 'pixels': run_pixels(out, cmd)
        elif n in RANDOM: run_random(n, RANDOM[n], out, cmd)
        elif n in CONFIGS: run_config(n, CONFIGS[n], runs, out, cmd)
        else: raise SystemExit(f"unknown configuration {n!r}; see --list")
        print(f"== {n}: {time.time() - t0:.0f} s", flush=True)


if __name__ == '__main__':
    main()
