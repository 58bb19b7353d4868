"""One run of a dense transfer protocol (seg, det, inst) at the cpu setting, on one backbone (the cpu tier's
random-init ResNet-18), one seed, timed: wall seconds and the process's peak memory; or the non-learned baseline's
figures (`--protocol baseline`). Each protocol runs in its own process so that the peak memory is its own.
Writes results/dense/cpu_<protocol>.json with provenance. This is not the benchmark (3 seeds × every method): it
measures what one protocol run costs on this machine, to size the benchmark.

Run from the repository root:  OMP_NUM_THREADS=1 .venv/bin/python -m experiments.dense_cpu_timing --protocol seg
"""
import argparse, json, resource, time
from pathlib import Path
import torch
from ssl_learn.core import get_tier, set_seed, provenance
from ssl_learn.data import load_fmnist
from ssl_learn.models import make_backbone
from ssl_learn.scenes import scene_benchmark, SCENE_TIERS
from ssl_learn.eval.seg import seg_eval, SEG_SETTINGS
from ssl_learn.eval.det import det_eval, inst_eval, baseline_eval, DET_SETTINGS

ap = argparse.ArgumentParser(prog='python -m experiments.dense_cpu_timing', description=__doc__.split('\n')[0])
ap.add_argument('--protocol', choices=('seg', 'det', 'inst', 'baseline'), required=True)
ap.add_argument('--setting', default='cpu', help="the scenes' and protocol's setting (cpu, or test for a smoke run)")
ap.add_argument('--epochs', type=int, default=None, help="fewer epochs than the setting's (the JSON records it)")
ap.add_argument('--out', default=None)
a = ap.parse_args()
torch.set_num_threads(int(__import__('os').environ.get('OMP_NUM_THREADS', '1')))
t0 = time.time()
bm = scene_benchmark(a.setting)
t_scenes = time.time() - t0
items = load_fmnist('train')
kw = dict(SEG_SETTINGS[a.setting]) if a.protocol == 'seg' else (dict(DET_SETTINGS[a.setting][a.protocol])
                                                                  if a.protocol in ('det', 'inst') else {})
if a.protocol != 'baseline': kw['seeds'] = (0,)
setting_epochs = kw.get('epochs')
if a.epochs: kw['epochs'] = a.epochs
set_seed(0)
bb = make_backbone(get_tier('cpu'), items)
t1 = time.time()
if a.protocol == 'seg': rows = seg_eval(bb, bm['voc_train'], bm['voc_test'], **kw)
elif a.protocol == 'det': rows = det_eval(bb, bm['voc_train'], bm['voc_test'], **kw)
elif a.protocol == 'inst': rows = inst_eval(bb, bm['coco_train'], bm['coco_test'], **kw)
else: rows = baseline_eval(bm['voc_train'], bm['voc_test'], bm['coco_test'], items)
wall = time.time() - t1
out = dict(protocol=a.protocol, setting=a.setting, backbone='random init (cpu tier: ' + str(bb.config) + ')',
           scenes=SCENE_TIERS[a.setting], settings={k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()},
           setting_epochs=setting_epochs, wall_seconds=round(wall, 1), scenes_seconds=round(t_scenes, 1),
           peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           threads=torch.get_num_threads(), rows=rows,
           note='one seed, one backbone; the machine was shared with other jobs (timings are upper bounds)',
           **provenance())
p = Path(a.out or f"results/dense/{a.setting}_{a.protocol}{f'_{a.epochs}ep' if a.epochs else ''}.json")
p.parent.mkdir(parents=True, exist_ok=True)
p.write_text(json.dumps(out, indent=1, default=float))
print(json.dumps({k: v for k, v in out.items() if k in ('protocol', 'wall_seconds', 'peak_rss_mb')}),
      [(r['metric'], round(r['value'], 2)) for r in rows])
