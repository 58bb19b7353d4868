"""core.matmul_nt and core.Linear reach oneDNN (aten::mkldnn_convolution), not torch's own slow 1×1 convolution, at
one thread and at two: torch sends a batch-1 1×1 convolution to oneDNN only with more than one thread, so a
single-threaded run (the test suite's, OMP_NUM_THREADS=1) would otherwise take a path slower than the BLAS."""
import os, subprocess, sys
import pytest

CODE = r'''
import sys, torch
from torch.profiler import profile
from ssl_learn.core import matmul_nt
torch.set_num_threads(int(sys.argv[1]))
M = int(sys.argv[2])
a, b = torch.randn(M, 64), torch.randn(96, 64)
with profile() as p: y = matmul_nt(a, b)
names = {e.name for e in p.events()}
torch.testing.assert_close(y, a @ b.t(), rtol=1e-5, atol=1e-4)
print('ROUTE', 'onednn' if 'aten::mkldnn_convolution' in names else 'slow_conv' if any('conv' in n for n in names) else 'blas')
'''


@pytest.mark.skipif(not __import__('torch').backends.mkldnn.is_available(), reason='torch without oneDNN')
@pytest.mark.parametrize('threads,rows,route', [(1, 4096, 'onednn'), (2, 4096, 'onednn'), (2, 4097, 'onednn'),
                                                (1, 4097, 'blas')])
def test_route(threads, rows, route):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    r = subprocess.run([sys.executable, '-c', CODE, str(threads), str(rows)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f'ROUTE {route}' in r.stdout, r.stdout[-500:]


LINEAR = r'''
import sys, torch
from torch.profiler import profile
from ssl_learn.core import Linear
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
lin, x = Linear(64, 96), torch.randn(int(sys.argv[2]) // 8, 8, 64, requires_grad=True)
ref = torch.nn.Linear(64, 96); ref.load_state_dict(lin.state_dict())
with profile() as p: y = lin(x); y.square().sum().backward()
names = {e.name for e in p.events()}
gx, gw = x.grad, lin.weight.grad; x.grad = None
ref(x).square().sum().backward()
torch.testing.assert_close(gx, x.grad, rtol=1e-4, atol=1e-4); torch.testing.assert_close(gw, ref.weight.grad, rtol=1e-4, atol=1e-3)
blas = {'aten::addmm', 'aten::mm', 'aten::linear', 'aten::matmul'} & names
print('ROUTE', 'onednn' if {'aten::mkldnn_convolution', 'aten::convolution_backward'} <= names and not blas
      else 'blas' if blas and 'aten::convolution' not in names else 'mixed/slow: ' + ' '.join(sorted(names)))
'''


@pytest.mark.skipif(not __import__('torch').backends.mkldnn.is_available(), reason='torch without oneDNN')
@pytest.mark.parametrize('threads,rows,route', [(1, 4096, 'onednn'), (2, 4096, 'onednn'), (2, 4104, 'onednn'),
                                                (1, 4104, 'blas'), (2, 328, 'onednn'), (2, 264, 'blas')])
def test_linear_route(threads, rows, route):
    "core.Linear's forward and backward (gradients as nn.Linear's) go through oneDNN's convolution and its backward."
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    r = subprocess.run([sys.executable, '-c', LINEAR, str(threads), str(rows)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f'ROUTE {route}' in r.stdout, r.stdout[-1500:]


def test_linear_compiles_whole():
    "Under torch.compile, Linear is F.linear: no graph break (the oneDNN route's Python checks would break the graph)."
    import torch
    from ssl_learn.core import Linear
    seq = torch.nn.Sequential(Linear(64, 64), torch.nn.GELU(), Linear(64, 64))
    for rows in (32, 33):
        ex = torch._dynamo.explain(seq)(torch.randn(rows, 64))
        assert ex.graph_break_count == 0 and ex.graph_count == 1, ex.break_reasons
