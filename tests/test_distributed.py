"""Distributed data parallel (issue 20).
- For every method, two gloo processes on two half-batches compute what one process computes on the whole batch (with
  per-rank BN emulated): the same loss, the same gradients, the same queue / bank / memory after a few steps. One spawn
  runs them all (`experiments.ddp_equality`, which writes the recorded table).
- The negative control: SimCLR with the local-slice gather fails that comparison, on the gradients only.
- A world-size-1 process group: DDP-wrapped training through `ssl_learner`, which catches every attribute a callback
  reads through the wrapper instead of `unwrap`.
- torchrun on the CPU: a 2-process run killed after its first epoch resumes with the same command.
"""
import pytest, torch, torch.distributed as dist
from torch import nn
from experiments import ddp_equality as E
from experiments.ddp_torchrun import kill_and_resume
from ssl_learn.data import TensorDL, load_fmnist
from ssl_learn.distributed import unwrap, wrap_ddp, is_distributed, get_world_size, DistributedSSL
from ssl_learn.learner import ssl_learner
from ssl_learn.method import SSLModel, list_methods

METHODS = list_methods()
MEMORY = ('moco_v1', 'moco_v2', 'densecl', 'npid', 'odc', 'deepcluster')   # they keep a queue, bank or memory

@pytest.fixture(scope='module')
def table(): return E.run(METHODS, steps=3)['table']

@pytest.mark.parametrize('method', METHODS)
def test_two_processes_compute_what_one_does(table, method):
    r = table[method]
    assert 'error' not in r, r.get('error')
    assert r['loss_equal'], f"{method}: losses differ by {r['max_dloss']}"
    assert r["grad_equal"], (f"{method}: first-step gradients differ by {r['max_dgrad_step1']} "
                             f"(largest gradient {r['max_grad']})")
    assert r['ranks_agree'], f"{method}: the two ranks' states differ"
    assert r['state_equal'], f"{method}: the state after the steps differs by {r['max_dstate']}"
    if method in MEMORY: assert r['queue_bank'] and r['queue_bank_equal'], (method, r['queue_bank'])

def test_negative_control_the_local_slice_gather_fails(table):
    "The gather that keeps only the local slice of the gradient: the first loss is the same, the gradients are not."
    bad, good = table['simclr:local_slice'], table['simclr']
    assert 'error' not in bad, bad.get('error')
    assert bad['max_dloss_first'] <= E.TOL * max(1, bad['loss'][0])   # a loss-only test would pass it
    assert not bad['grad_equal'] and bad['max_dgrad_step1'] > 1e3 * good['max_dgrad_step1']

def test_the_rows_of_a_rank():
    "Crop-major tensors give each rank its rows of every crop block; image-major ones a contiguous block."
    t = torch.arange(8)                                          # 2 crops × 4 images, 2 ranks
    assert E.rank_rows(t, 0, 'simclr', world=2, n=4).tolist() == [0, 1, 4, 5]
    assert E.rank_rows(t, 1, 'simclr', world=2, n=4).tolist() == [2, 3, 6, 7]
    assert E.rank_rows(t, 1, 'relative_loc', world=2, n=4).tolist() == [4, 5, 6, 7]

def test_shards_cover_the_global_batch():
    "Every rank draws the same order from the shared generator and keeps its slice: together, the global batch."
    x = torch.arange(40).view(40, 1, 1, 1)
    def batches(shard):
        dl = TensorDL(x, None, bs=8, shuffle=True, drop_last=True, device='cpu')
        dl.shard, dl.perm_generator = shard, torch.Generator().manual_seed(3)
        return [b[1] for b in dl]
    full, r0, r1 = batches(None), batches((0, 2)), batches((1, 2))
    assert len(full) == len(r0) == len(r1) == 5 and all(len(b) == 4 for b in r0 + r1)
    assert all(torch.equal(torch.cat([a, b]), f) for a, b, f in zip(r0, r1, full))

# ---------------------------------------------------------------- a process group of one
@pytest.fixture(scope='module')
def world1(tmp_path_factory):
    if dist.is_initialized(): pytest.skip('a process group already exists')
    f = tmp_path_factory.mktemp('pg')/'rdzv'
    dist.init_process_group('gloo', init_method=f'file://{f}', rank=0, world_size=1)
    yield
    dist.destroy_process_group()

def test_ddp_hides_the_model_and_unwrap_finds_it(world1):
    class M(SSLModel):
        def __init__(self): super().__init__(); self.backbone = nn.Linear(2, 2)
    m = M(); ddp = wrap_ddp(m, 'cpu')
    assert getattr(ddp, 'on_step', None) is None and not hasattr(ddp, 'backbone')   # why every callback unwraps
    assert unwrap(ddp) is m and unwrap(m) is m
    assert not is_distributed() and get_world_size() == 1        # one rank: the collectives stay no-ops

class _Probe:
    "A callback recording the model's type while training (it must be DDP) — built on fastai's Callback."
    def __new__(cls):
        from fastai.callback.core import Callback
        class Probe(Callback):
            def after_pred(self): self.wrapped = isinstance(self.learn.model, nn.parallel.DistributedDataParallel)
        return Probe()

@pytest.mark.parametrize('method', ['moco_v2', 'swav', 'npid', 'odc', 'deepcluster'])
def test_world_size_one_ddp_training(world1, tmp_path, method):
    "Every callback that reads the model (on_step, the kNN monitor, banks, clusters, prototypes) works through DDP."
    train, test = load_fmnist('train').subset(128), load_fmnist('test').subset(64)
    learn = ssl_learner(train, method, 'test', valid=test, monitor=(test, test, 5), path=tmp_path, device='cpu', bs=32)
    assert any(isinstance(cb, DistributedSSL) for cb in learn.cbs)   # inside a process group: distributed by default
    m = learn.model
    ema = {'moco_v2': 'backbone_k'}.get(method)
    before = [p.detach().clone() for p in getattr(m, ema).parameters()] if ema else None
    probe = _Probe()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 0.01, cbs=[probe])
    assert probe.wrapped and learn.model is m                     # wrapped while training, unwrapped after
    if ema: assert not all(torch.equal(a, b) for a, b in zip(before, getattr(m, ema).parameters()))   # on_step ran
    st = torch.load(tmp_path/'last.pth', weights_only=True)
    assert not any(k.startswith('module.') for k in st['model'])
    assert learn.checkpoint.history[-1]['knn5'] is not None       # the monitor read the backbone through the wrapper

# ---------------------------------------------------------------- torchrun
def test_torchrun_two_processes_resume_after_a_kill(tmp_path):
    r = kill_and_resume('simclr', tmp_path/'run', 'test', 2, 29750)
    assert r['ok'], r
    assert r['world_size'] == 2
