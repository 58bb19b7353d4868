"""The prepared GPU check (`scripts/gpu_check.sh` → `experiments.gpu_check`) cannot run here (no GPU): without CUDA it
must say so and measure nothing; its code path is rehearsed on the CPU at small sizes."""
from ssl_learn.method import list_methods
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA: the check would run')

def test_the_shell_script_parses():
    assert subprocess.run(['bash', '-n', str(ROOT/'scripts'/'gpu_check.sh')]).returncode == 0

@no_cuda
@pytest.mark.parametrize('via', ['python', 'bash'])
def test_without_cuda_it_says_so_and_writes_nothing(tmp_path, via):
    out = tmp_path/'gpu.json'
    cmd = ([sys.executable, '-m', 'experiments.gpu_check'] if via == 'python' else ['bash', 'scripts/gpu_check.sh'])
    r = subprocess.run(cmd + ['--out', str(out)], cwd=ROOT, env=dict(ENV, PYTHON=sys.executable), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert 'no CUDA device' in r.stderr and 'nothing was measured' in r.stderr
    assert not out.exists()

def test_cpu_rehearsal_runs_every_part(tmp_path):
    out = tmp_path/'gpu.json'
    r = subprocess.run([sys.executable, '-m', 'experiments.gpu_check', '--device', 'cpu', '--quick', '--steps', '2',
                        '--out', str(out)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    res = json.loads(out.read_text())
    assert res['all_ok'] and len(res['methods']['methods']) == len(list_methods())   # the 14 and supervised
    assert all(m['state_changed'] > 0 for n, m in res['methods']['methods'].items()
               if n in ('moco_v2', 'byol', 'npid', 'odc', 'densecl', 'moco_v3'))   # EMA / queue / bank moved
    assert res['knn']['prediction_agreement_pct'] >= 99
    assert sorted(res['throughput']) == ['byol', 'moco_v2', 'simclr', 'supervised']
    assert all(t['images_per_s'] > 0 and t['gflop_per_image'] > 0 for t in res['throughput'].values())
    assert res['faiss_backend'] in ('cpu', 'gpu') and 'commit' in res
