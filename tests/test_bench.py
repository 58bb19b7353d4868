"""ssl_learn.bench: the runner's failure path and resume, and the renderers on the recorded results."""
import json, shutil
from pathlib import Path
import pytest
from ssl_learn.bench import bench, render, load_bench, bench_methods, estimate_seconds, row_order

ROOT = Path(__file__).resolve().parents[1]


def test_failing_method_is_reported_and_others_run(tmp_path):
    runs = tmp_path/'runs'; d = runs/'rotation_test'; d.mkdir(parents=True)
    (d/'backbone.pth').write_bytes(b'not a checkpoint')          # a finished-looking run with a broken backbone
    (d/'train.json').write_text(json.dumps(dict(method='rotation', epochs=1, seconds=1.0, history=[])))
    log = bench('test', 'rotation', 'knn', out=tmp_path/'res', runs=runs, baselines=('random',))
    assert log['failed'] == ['rotation knn'] and log['results']['random']['knn']['status'] == 'ran'
    assert (tmp_path/'res/eval_test/random_knn.json').exists() and not (tmp_path/'res/eval_test/rotation_knn.json').exists()
    rec = json.loads((tmp_path/'res/bench_test.json').read_text())['runs'][-1]
    assert rec['failed'] == ['rotation knn'] and rec['seconds'] > 0 and 'machine' in rec
    log2 = bench('test', 'rotation', 'knn', out=tmp_path/'res', runs=runs, baselines=('random',))   # resumes: random is done
    assert log2['results']['random'] == {'status': 'done before'} and log2['failed'] == ['rotation knn']


def test_bad_arguments():
    with pytest.raises(ValueError, match='Unknown method'): bench('test', 'telepathy', 'knn')
    with pytest.raises(ValueError, match='Unknown protocol'): bench('test', 'rotation', 'magic')
    with pytest.raises(ValueError, match='Unknown baseline'): bench('test', 'rotation', 'knn', baselines=('oracle',))
    with pytest.raises(ValueError, match='protocol settings'): bench('test', 'rotation', 'knn', settings='fast')


def test_render_and_estimate_from_recorded_results(tmp_path):
    src = ROOT/'results'
    if not (src/'eval_cpu').exists(): pytest.skip('no recorded cpu-tier results')
    shutil.copytree(src/'eval_cpu', tmp_path/'eval_cpu')
    for f in src.glob('*_cpu_train.json'): shutil.copy(f, tmp_path)
    md = render(tmp_path, 'cpu')
    assert md.startswith('| backbone | kNN k=10') and '| random |' in md and 'Settings' in md
    assert all((tmp_path/f'bench_cpu_{k}.png').stat().st_size > 5000 for k in ('time', 'stages', 'lowshot'))
    names = [l.split('|')[1].strip() for l in md.splitlines()[2:] if l.startswith('| ') and 'backbone' not in l][:len(load_bench(tmp_path)['results'])]
    assert names == row_order(names)
    full, fast = estimate_seconds('cpu', tmp_path), estimate_seconds('cpu_bench', tmp_path)
    assert 0 < fast['protocols_per_backbone'] < full['protocols_per_backbone'] and fast['n_methods'] >= len(bench_methods())


def test_protocols_of_one_backbone_share_one_process(tmp_path):
    "kNN and linear run in one worker: both files written, each marked as sharing features; a protocol already done is not redone."
    from ssl_learn.bench import run_protocols
    res = run_protocols('random', 'random', ['knn', 'linear'], 'test', 'fmnist', tmp_path, 'test', bench_command='pytest')
    assert {p: r['status'] for p, r in res.items()} == {'knn': 'ran', 'linear': 'ran'}, res
    for p in ('knn', 'linear'):
        d = json.loads((tmp_path/f'random_{p}.json').read_text())
        assert d['name'] == 'random' and d['command'] == 'pytest' and 'knn, linear' in d['bench']['process']
        assert all(r['shared_features'] and r['protocol'] == p for r in d['rows']) and d['wall_seconds'] > 0
    bad = run_protocols('nowhere', str(tmp_path/'missing.pth'), ['knn'], 'test', 'fmnist', tmp_path, 'test')
    assert bad['knn']['status'] == 'failed' and 'missing.pth' in bad['knn']['error']
