"""Throughput of the dense protocols at the cpu setting, to size them: seconds per training step (batch of the
setting) over `--steps` steps after one warm-up step, and seconds per test image at inference, on the cpu tier's
random-init ResNet-18 and the cpu FMNIST-Scenes; the extrapolated wall time of one protocol run (one seed) =
steps × epochs × s/step + 500 test images × s/image. Writes results/dense/cpu_throughput.json with provenance.
A whole run did not fit in the 10 minutes a command may take on the shared 2-core machine (results/dense/cpu_*_1ep.json
and the note there).

Run from the repository root:  OMP_NUM_THREADS=1 .venv/bin/python -m experiments.dense_cpu_throughput
"""
import argparse, json, resource, time
from pathlib import Path
import torch
from ssl_learn.core import get_tier, set_seed, provenance
from ssl_learn.data import load_fmnist
from ssl_learn.models import make_backbone
from ssl_learn.scenes import scene_benchmark, SCENE_TIERS
from ssl_learn.eval.seg import FCN, SEG_SETTINGS, predict_seg
from ssl_learn.eval.det import c4_faster_rcnn, fpn_mask_rcnn, DET_SETTINGS, _det_batch, predict_det

ap = argparse.ArgumentParser(prog='python -m experiments.dense_cpu_throughput', description=__doc__.split('\n')[0])
ap.add_argument('--steps', type=int, default=5); ap.add_argument('--n-test', type=int, default=16)
ap.add_argument('--protocols', default='seg,det,inst')
ap.add_argument('--tier', default='cpu', help="the backbone's tier")
ap.add_argument('--out', default='results/dense/cpu_throughput.json')
a = ap.parse_args()
bm = scene_benchmark('cpu'); set_seed(0)
bb = make_backbone(get_tier(a.tier), load_fmnist('train'))
out = {}
for p in a.protocols.split(','):
    kw = SEG_SETTINGS['cpu'] if p == 'seg' else DET_SETTINGS['cpu'][p]
    tr, te = (bm['coco_train'], bm['coco_test']) if p == 'inst' else (bm['voc_train'], bm['voc_test'])
    if p == 'seg': m = FCN(bb, 11)
    elif p == 'det': m = c4_faster_rcnn(bb, 10, 112, rpn_post_nms_top_n_test=kw.get('proposals', 100))
    else: m = fpn_mask_rcnn(bb, 10, 112, kw['channels'], kw['fc'], kw['mask_channels'],
                            rpn_post_nms_top_n_test=kw.get('proposals', 100))
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9); m.train(); bs = kw['bs']; ts_ = []
    for i in range(a.steps + 1):
        idx = torch.arange(i*bs, (i+1)*bs); t = time.time()
        if p == 'seg': loss = m.loss(m(tr.images[idx]), tr.semantic[idx].long())
        else:
            xs, ts = _det_batch(tr, idx, masks=p == 'inst'); loss = sum(m(xs, ts).values())
        opt.zero_grad(); loss.backward(); opt.step()
        if i: ts_.append(time.time() - t)                       # the first step is a warm-up
    step = sum(ts_) / len(ts_)
    sub = te.subset(range(a.n_test)); t = time.time()
    predict_seg(m, sub) if p == 'seg' else predict_det(m, sub)
    inf = (time.time() - t) / a.n_test
    steps = kw['epochs'] * (len(tr) // bs)
    out[p] = dict(s_per_step=round(step, 3), batch=bs, train_img_per_s=round(bs / step, 2), s_per_test_image=round(inf, 4),
                  steps_per_seed=steps, n_test=len(te), extrapolated_seconds_per_seed=round(steps*step + len(te)*inf),
                  settings={k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()})
    print(p, out[p])
res = dict(backbone=f'random init, {a.tier} tier {bb.config}', scenes=SCENE_TIERS['cpu'], protocols=out,
           threads=torch.get_num_threads(),
           peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), measured_steps=a.steps,
           measured_test_images=a.n_test, note='shared 2-core machine (other jobs running): upper bounds', **provenance())
Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))
