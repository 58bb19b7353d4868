"""ssl_learn.bench: the runner's failure path and resume, and the renderers on the recorded results."""
import json, shutil
from pathlib import Path
import pytest
from ssl_learn.bench.run import bench, bench_methods, row_order
from ssl_learn.bench.report import render, load_bench
from ssl_learn.bench.estimate import estimate_seconds

ROOT = Path(__file__).resolve().parents[1]


def test_failing_method_is_reported_and_others_run(tmp_path):
    runs = tmp_path/'runs'; d = runs/'fmnist/test/rotation'; d.mkdir(parents=True)
    (d/'backbone.pth').write_bytes(b'not a checkpoint')          # a finished-looking run with a broken backbone
    (d/'train.json').write_text(json.dumps(dict(method='rotation', epochs=1, seconds=1.0, history=[])))
    log = bench('test', 'rotation', 'knn', out=tmp_path/'res', runs=runs, baselines=('random',))
    assert log['failed'] == ['rotation knn'] and log['results']['random']['knn']['status'] == 'ran'
    ev = tmp_path/'res/fmnist/test/eval'
    assert (ev/'random_knn.json').exists() and not (ev/'rotation_knn.json').exists()
    rec = json.loads((tmp_path/'res/fmnist/test/log.json').read_text())['runs'][-1]
    assert rec['failed'] == ['rotation knn'] and rec['seconds'] > 0 and 'machine' in rec
    log2 = bench('test', 'rotation', 'knn', out=tmp_path/'res', runs=runs, baselines=('random',))   # resumes: random is done
    assert log2['results']['random'] == {'status': 'done before'} and log2['failed'] == ['rotation knn']


def test_bad_arguments():
    with pytest.raises(ValueError, match='Unknown method'): bench('test', 'telepathy', 'knn')
    with pytest.raises(ValueError, match='Unknown protocol'): bench('test', 'rotation', 'magic')
    with pytest.raises(ValueError, match='Unknown baseline'): bench('test', 'rotation', 'knn', baselines=('oracle',))
    with pytest.raises(ValueError, match='protocol settings'): bench('test', 'rotation', 'knn', settings='fast')


def test_render_and_estimate_from_recorded_results(tmp_path):
    src = ROOT/'results/bench/fmnist/cpu'
    if not (src/'eval').exists(): pytest.skip('no recorded cpu-tier results')
    shutil.copytree(src/'eval', tmp_path/'fmnist/cpu/eval'); shutil.copytree(src/'train', tmp_path/'fmnist/cpu/train')
    md = render(tmp_path, 'cpu')
    assert md.startswith('| backbone | kNN k=10') and '| random |' in md and 'Settings' in md
    assert all((tmp_path/f'fmnist/cpu/{k}.png').stat().st_size > 5000 for k in ('time', 'stages', 'lowshot'))
    names = [l.split('|')[1].strip() for l in md.splitlines()[2:] if l.startswith('| ') and 'backbone' not in l][:len(load_bench(tmp_path)['results'])]
    assert names == row_order(names)
    full, fast = estimate_seconds('cpu', tmp_path), estimate_seconds('cpu_bench', tmp_path)
    assert 0 < fast['protocols_per_backbone'] < full['protocols_per_backbone'] and fast['n_methods'] >= len(bench_methods())


def test_protocols_of_one_backbone_share_one_process(tmp_path):
    "kNN and linear run in one worker: both files written, each marked as sharing features; a protocol already done is not redone."
    from ssl_learn.bench.run import run_protocols
    res = run_protocols('random', 'random', ['knn', 'linear'], 'test', 'fmnist', tmp_path, 'test', bench_command='pytest')
    assert {p: r['status'] for p, r in res.items()} == {'knn': 'ran', 'linear': 'ran'}, res
    for p in ('knn', 'linear'):
        d = json.loads((tmp_path/f'random_{p}.json').read_text())
        assert d['name'] == 'random' and d['command'] == 'pytest' and 'knn, linear' in d['bench']['process']
        assert all(r['shared_features'] and r['protocol'] == p for r in d['rows']) and d['wall_seconds'] >= 0
    # kNN, first, extracts the features; linear reuses them and may take under 0.05 s (its rounded time can be 0.0)
    assert json.loads((tmp_path/'random_knn.json').read_text())['wall_seconds'] > 0
    bad = run_protocols('nowhere', str(tmp_path/'missing.pth'), ['knn'], 'test', 'fmnist', tmp_path, 'test')
    assert bad['knn']['status'] == 'failed' and 'missing.pth' in bad['knn']['error']


def test_full_run_adds_the_pretraining_it_reused(tmp_path):
    "The whole benchmark's cost: the last call's wall time plus the recorded pre-training of methods it found trained, not of those it trained."
    from ssl_learn.bench.run import full_run, full_run_report
    assert full_run(tmp_path, 'cpu') is None and 'No `ssl_learn bench` call' in full_run_report(None)
    run = dict(command='ssl_learn bench --tier cpu', time='t', commit='abc', machine=dict(cpu='X', cores=2), settings='cpu_bench',
               seconds=3600., failed=[], results=dict(
                   random=dict(knn=dict(status='ran', seconds=50.)),
                   simclr=dict(train=dict(status='trained', seconds=200.), knn=dict(status='ran', seconds=40.)),
                   byol=dict(train=dict(status='done before', seconds=1800.), knn=dict(status='ran', seconds=40.)),
                   npid=dict(status='done before')))
    from ssl_learn.bench.run import bench_methods
    run['results'].update({m: dict(knn=dict(status='ran', seconds=1.)) for m in bench_methods('all') if m not in run['results']})
    (tmp_path/'fmnist/cpu').mkdir(parents=True)
    (tmp_path/'fmnist/cpu/log.json').write_text(json.dumps(dict(runs=[dict(run, seconds=1.), run])))   # the last call counts
    f = full_run(tmp_path, 'cpu')
    assert f['total'] == 3600. + 1800. and f['trained'] == ['simclr'] and f['pretrain_before'] == {'byol': 1800.}
    assert f['all_done_before'] == ['npid'] and f['ran']['random'] == ['knn']
    txt = full_run_report(f)
    assert '**1.50 h**' in txt and 'within the 3-hour budget' in txt and 'npid done before' in txt
    assert 'OVER' in full_run_report(f, budget_h=1.)


def test_full_run_of_a_partial_call_does_not_claim_the_whole_benchmark(tmp_path):
    "A `--methods`/`--protocols` call is one piece of the benchmark: its time is not reported as the whole benchmark's."
    from ssl_learn.bench.run import full_run, full_run_report
    run = dict(command='ssl_learn bench --methods simsiam --protocols det', time='t', commit='abc',
               machine=dict(cpu='X', cores=2), settings='cpu_bench', seconds=600., failed=[], protocols=['det'],
               results=dict(simsiam=dict(train=dict(status='kept', seconds=900.), det=dict(status='ran', seconds=600.))))
    (tmp_path/'fmnist/zoo').mkdir(parents=True)
    (tmp_path/'fmnist/zoo/log.json').write_text(json.dumps(dict(runs=[run])))
    f = full_run(tmp_path, 'zoo'); txt = full_run_report(f)
    assert 'The whole benchmark' not in txt and 'budget' not in txt and 'left out' in txt
    assert 'moco_v3' in f['partial'] and 'protocols knn' in f['partial'] and 'simsiam,' not in f['partial']


def test_method_report_lists_lightly_seeds(tmp_path):
    "One line per comparison file (the seed read from the command when the file lacks it) and a mean ± std line when there are several."
    from ssl_learn.bench.report import method_report
    c = lambda ours, theirs, seed: dict(ours=dict(images_per_s=300., knn_top1={'20': ours}), theirs=dict(images_per_s=150., knn_top1={'20': theirs}),
                                        ratios={'images_per_s': 2.0, 'knn20': ours / theirs}, n_pretrain=8, epochs=1, bs=4,
                                        command=f'experiments/compare_lightly.py --methods simclr --seed {seed}')
    cmp = tmp_path/'comparisons/lightly/simclr'; cmp.mkdir(parents=True); tr = tmp_path/'bench/fmnist/cpu/train'; tr.mkdir(parents=True)
    (cmp/'seed0.json').write_text(json.dumps(c(80., 81., 0)))
    assert method_report('simclr', tmp_path).startswith('*No cpu-tier results')
    (tr/'simclr.json').write_text(json.dumps(dict(n_pretrain=8, epochs=1, seconds=3., commit='abc', history=[
        dict(images_per_s=10., peak_memory_mb=5., knn20=50.)])))
    r = method_report('simclr', tmp_path)
    assert '(no protocol results yet)' in r and '(seed 0;' in r and 'over the' not in r
    (cmp/'seed1.json').write_text(json.dumps(c(82., 81., 1)))
    r = method_report('simclr', tmp_path)
    assert '(seed 1;' in r and 'over the 2 seeds' in r and 'ours 81.00 ± 1.41 vs theirs 81.00 ± 0.00' in r
    for s in (10, 2):
        (cmp/f'seed{s}.json').write_text(json.dumps(c(81., 81., s)))
    r = method_report('simclr', tmp_path)
    assert r.index('(seed 1;') < r.index('(seed 2;') < r.index('(seed 10;')      # numeric order, not the file names'


def test_bench_does_not_take_a_bf16_run_for_its_own():
    # the benchmark trains in float32: a bf16 run in its run folder is another run, not "done before"
    from ssl_learn.bench.run import _record_differs
    from ssl_learn.core import get_tier
    t = get_tier('test')
    got = dict(method='rotation', data='fmnist', tier='test', epochs=t.epochs, config=dict(precision='bf16'))
    assert any(b.startswith('precision') for b in _record_differs(got, 'rotation', t, 'fmnist'))
    got['config'] = {}   # float32 runs record no precision
    assert not any(b.startswith('precision') for b in _record_differs(got, 'rotation', t, 'fmnist'))


def test_a_result_whose_settings_changed_since_is_stale(tmp_path):
    "Same settings name, but a value of it changed since (the dense seg went 16 -> 32 epochs): the file is run again."
    import json
    from ssl_learn.bench.run import _stale
    from ssl_learn.eval.protocols import PROTOCOL_SETTINGS
    cur = json.loads(json.dumps(PROTOCOL_SETTINGS['cpu_bench']['seg']))
    f = tmp_path/'random_seg.json'
    write = lambda s: f.write_text(json.dumps(dict(bench=dict(settings='cpu_bench'),
                                                   rows=[dict(protocol='seg', settings=s, value=1.)])))
    write(cur); assert _stale(f, 'cpu_bench') is None
    write(dict(cur, epochs=cur['epochs'] // 2)); assert 'epochs=' in _stale(f, 'cpu_bench')
    write({k: v for k, v in cur.items() if k != 'precision'}); assert _stale(f, 'cpu_bench') is None   # older keys absent
