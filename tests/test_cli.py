"The console script, end to end, as a user runs it."
import json, subprocess, sys
from pathlib import Path
import pytest, torch

BIN = Path(sys.executable).parent/'ssl_learn'

def run(*args, ok=True):
    r = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, timeout=600)
    if ok: assert r.returncode == 0, r.stderr[-2000:]
    return r

def test_methods_lists_rotation():
    assert 'rotation' in run('methods').stdout

def test_train_then_eval(tmp_path):
    out = tmp_path/'run'
    r = run('train', 'rotation', '--data', 'fmnist', '--tier', 'test', '--out', out)
    assert (out/'backbone.pth').exists() and (out/'last.pth').exists()
    log = json.loads((out/'log.json').read_text())
    assert len(log['history']) == 1 and 'knn20' in log['history'][0] and log['history'][0]['images_per_s'] > 0
    # running again resumes: nothing left to do
    r2 = run('train', 'rotation', '--data', 'fmnist', '--tier', 'test', '--out', out)
    assert 'Resuming' in r2.stdout
    e = run('eval', out/'backbone.pth', '--protocol', 'knn', '--data', 'fmnist', '--tier', 'test', '--out', tmp_path/'e.json')
    assert 'k=200' in e.stdout
    rows = json.loads((tmp_path/'e.json').read_text())['rows']
    assert [r['k'] for r in rows] == [10, 20, 100, 200] and all(0 <= r['value'] <= 100 for r in rows)
    assert rows[0]['commit'] if 'commit' in rows[0] else True

def test_eval_errors_are_clear(tmp_path):
    (tmp_path/'junk.pth').write_text('junk')
    r = run('eval', tmp_path/'junk.pth', '--tier', 'test', ok=False)
    assert r.returncode == 2 and 'not a loadable' in r.stderr and 'Traceback' not in r.stderr
    r = run('eval', tmp_path/'missing.pth', '--tier', 'test', ok=False)
    assert r.returncode == 2 and 'No checkpoint' in r.stderr
    r = run('train', 'nomethod', '--tier', 'test', '--out', tmp_path/'x', ok=False)
    assert r.returncode == 2 and 'available' in r.stderr
    r = run('eval', tmp_path/'junk.pth', '--protocol', 'magic', '--tier', 'test', ok=False)
    assert r.returncode == 2 and 'protocol' in r.stderr
