"""Issue 16, "nothing silently wrong, nothing lost": bad values, wrong checkpoints, broken numbers, file-system faults,
interruptions and two writers. `CASES` is the table the docs render: each case's `check` produces what the user
sees; `test_case` runs it and checks that every `quoted` fragment of `sees` is in what came out (and the exit code)."""
import atexit, errno, fcntl, json, math, os, re, shlex, shutil, subprocess, sys, tempfile, time, warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from unittest import mock
import pytest, torch
from fastai.callback.core import Callback, CancelFitException
from ssl_learn.core import set_seed, get_tier, default_device, atomic_save
from ssl_learn.data import load_fmnist
from ssl_learn.learner import ssl_learner, load_checkpoint, train
from ssl_learn.models import make_backbone, save_backbone
from ssl_learn.features import extract_features
from ssl_learn.eval.protocols import evaluate
from ssl_learn.cli import main

BIN = Path(sys.executable).parent/'ssl_learn'
NAN = float('nan')
_TMP = Path(tempfile.mkdtemp(prefix='ssl_badinput_'))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)

def _fresh() -> Path:
    return Path(tempfile.mkdtemp(dir=_TMP))

@lru_cache(None)
def _finished() -> Path:
    "A finished one-epoch run at the test tier (rotation, no monitor), made once."
    out = _fresh()/'run'
    train('rotation', 'fmnist', 'test', out=out, monitor=False)
    return out

def _run_copy() -> Path:
    out = _fresh()/'run'; shutil.copytree(_finished(), out); return out

@lru_cache(None)
def _small():
    return load_fmnist('train').subset(256, balanced=False)

class Poison(Callback):
    "Make the weights nan before batch `it` of epoch `ep` (a run that diverges there)."
    order = 0
    def __init__(self, ep=1, it=1): self.ep, self.it = ep, it
    def before_batch(self):
        if self.training and self.epoch == self.ep and self.iter == self.it:
            with torch.no_grad(): next(self.model.parameters()).fill_(NAN)

def _diverge():
    "A learner whose weights become nan in its second epoch; returns its run directory."
    out = _fresh()/'run'
    set_seed(0); learn = ssl_learner(_small(), 'rotation', 'test', path=out, bs=64, width=8, device='cpu')
    learn.fit_one_cycle(2, 0.05, cbs=Poison())
    return out

def _nan_backbone() -> Path:
    tr = load_fmnist('train').subset(64)
    set_seed(0); bb = make_backbone(get_tier('test'), tr)
    with torch.no_grad(): next(bb.parameters()).fill_(NAN)
    return save_backbone(bb, _fresh()/'diverged.pth')

def _full_disk_train():
    "`ssl_learn train` into a folder whose checkpoint lands on a full disk (/dev/full stands in for the temp file)."
    out = _fresh()/'run'; out.mkdir()
    (out/f'.last.pth.tmp{os.getpid()}').symlink_to('/dev/full')
    main(['train', 'rotation', '--tier', 'test', '--out', str(out), '--no-monitor'])

def _held(out):
    "Train into `out` while another writer holds its lock."
    out.mkdir(parents=True, exist_ok=True)
    with open(out/'.lock', 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        train('rotation', 'fmnist', 'test', out=out, monitor=False)

def _restored_log():
    out = _run_copy(); (out/'log.json').unlink()       # killed between writing last.pth and log.json
    train('rotation', 'fmnist', 'test', out=out, monitor=False)
    print('log.json epochs:', [h['epoch'] for h in json.loads((out/'log.json').read_text())['history']])

def _ro_eval():
    "`ssl_learn eval` whose output folder is on a read-only file system (the write probe meets EROFS)."
    def probe(*a, **k): raise OSError(errno.EROFS, 'Read-only file system', str(k.get('dir')))
    with mock.patch('tempfile.mkstemp', probe):
        main(['eval', 'random', '--tier', 'test', '--out', str(_fresh()/'e.json')])

CASES = [
    dict(input='`ssl_learn train --lr nan` (or 0, -0.1, inf)', sees='exit 2: `lr must be a finite number > 0, got nan`',
         check=lambda: main(['train', 'rotation', '--tier', 'test', '--out', str(_fresh()), '--lr', 'nan'])),
    dict(input='`ssl_learn eval --T nan`', sees='exit 2: `knn setting T=nan: must be a finite number > 0`',
         check=lambda: main(['eval', 'random', '--tier', 'test', '--T', 'nan', '--out', str(_fresh()/'e.json')])),
    dict(input='kNN `k` larger than the labeled training split',
         sees='`ValueError` before any feature is extracted: `k=100000 is larger than the 512 labeled training images`',
         check=lambda: evaluate('random', 'knn', 'fmnist', 'test', overrides=dict(knn=dict(ks=(100000,))))),
    dict(input='a tier with `wd=nan` or `lr=inf`', sees='`ValueError`: `wd must be a finite number ≥ 0, got nan`',
         check=lambda: get_tier('test', wd=NAN)),
    dict(input="`--out` holds a checkpoint of another run (here: another lr)",
         sees='exit 2, every differing field old → new: `lr 0.05 → 0.1`, `--no-resume`',
         check=lambda: main(['train', 'rotation', '--tier', 'test', '--out', str(_run_copy()), '--no-monitor',
                             '--lr', '0.1'])),
    dict(input="`--out` holds another method's checkpoint",
         sees="`ValueError` naming what differs (no raw RuntimeError): `method 'rotation' → 'simsiam'`",
         check=lambda: train('simsiam', 'fmnist', 'test', out=_run_copy(), monitor=False)),
    dict(input='`--epochs` changed on resume', sees='`epochs 1 → 2`, `one-cycle`',
         check=lambda: train('rotation', 'fmnist', 'test', out=_run_copy(), epochs=2, monitor=False)),
    dict(input='killed between writing last.pth and log.json',
         sees='`Resuming from`, and log.json is rewritten from last.pth: `log.json epochs: [0]`', check=_restored_log),
    dict(input='the training loss becomes nan',
         sees='`TrainingDiverged`: `the training loss became nan`, `keeps the state after epoch 1`', check=_diverge),
    dict(input='evaluating a backbone with nan weights', sees='`ValueError`: `diverged.pth: non-finite weights`',
         check=lambda: evaluate(_nan_backbone(), 'knn', 'fmnist', 'test')),
    dict(input='`--out` is a file', sees='exit 2 at once: `is a file, not a directory`',
         check=lambda: main(['train', 'rotation', '--tier', 'test', '--out', str(atomic_save('x', _fresh()/'f'))])),
    dict(input='`--out` on a full disk', sees='exit 1: `no space left on the disk holding`', check=_full_disk_train),
    dict(input='`ssl_learn eval --out` on a read-only file system',
         sees='exit 1 before any protocol runs: `cannot write`, `read-only file system`', check=lambda: _ro_eval()),
    dict(input='Ctrl-C during `ssl_learn train`',
         sees='exit 130: `interrupted`, `kept in`, `resume with: ssl_learn train rotation`',
         check=lambda: _interrupt(KeyboardInterrupt())),
    dict(input='SIGTERM during `ssl_learn train`', sees='exit 143: `interrupted (SIGTERM)`, `resume with:`',
         check=lambda: _interrupt(KeyboardInterrupt('SIGTERM'))),
    dict(input='a second training into the same `--out`',
         sees='`BlockingIOError` at once: `in use by another training`',
         check=lambda: _held(_fresh()/'run')),
    dict(input="`device='cuda'` on a machine without CUDA", sees='`ValueError`: `CUDA is not available`',
         check=lambda: _no_cuda(lambda: default_device('cuda'))),
    dict(input='saving onto a path that is a directory', sees='`IsADirectoryError`: `is a directory`',
         check=lambda: atomic_save({'a': 1}, _fresh())),
]

def _interrupt(exc):
    out = _run_copy()
    with mock.patch('ssl_learn.cli.train', side_effect=exc):
        main(['train', 'rotation', '--tier', 'test', '--out', str(out), '--no-resume'])

def _no_cuda(f):
    with mock.patch('torch.cuda.is_available', return_value=False): return f()

@pytest.mark.parametrize('case', CASES, ids=[re.sub(r'\W+', '_', c['input']).strip('_') for c in CASES])
def test_case(case, capsys):
    err, code = None, None
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        try: case['check']()
        except SystemExit as e: code = e.code
        except BaseException as e: err = e    # noqa: BLE001 (KeyboardInterrupt included: it must never escape)
    cap = capsys.readouterr()
    seen = '\n'.join([f'{type(err).__name__}: {err}' if err else '', cap.out, cap.err, *(str(w.message) for w in ws)])
    for frag in re.findall(r'`([^`]+)`', case['sees']):
        assert frag in seen, f"{frag!r} not in what the user sees:\n{seen[-3000:]}"
    m = re.match(r'exit (\d+)', case['sees'])
    if m: assert code == int(m.group(1)), (code, seen[-2000:])
    assert 'Traceback' not in cap.err

# --- A: a checkpoint of another run is refused; the safe resume stays exact ---------------------------------------

def test_resume_refuses_another_configuration(tmp_path):
    out = tmp_path/'run'
    train('rotation', 'fmnist', 'test', out=out, monitor=False)
    st = torch.load(out/'last.pth', weights_only=True)
    for kw, msg in [(dict(lr=0.1), 'lr 0.05 → 0.1'), (dict(seed=1), 'seed 0 → 1'), (dict(bs=32), 'bs 64 → 32'),
                    (dict(width=8), 'arch.width 16 → 8'), (dict(epochs=2), 'epochs 1 → 2'),
                    (dict(method='simsiam'), "method 'rotation' → 'simsiam'"),
                    (dict(method_kw=dict(crop_scale=(0.5, 1.))), 'method_kw.crop_scale')]:
        kw = dict(dict(method='rotation', data='fmnist', tier='test', out=out, monitor=False), **kw)
        with pytest.raises(ValueError) as e: train(**kw)
        assert msg in str(e.value) and '--no-resume' in str(e.value) and '--out' in str(e.value), str(e.value)
        if 'epochs' in kw: assert 'one-cycle' in str(e.value)
    assert {'method', 'data', 'tier', 'arch', 'seed', 'lr', 'bs', 'epochs', 'method_kw'} <= set(st['meta']['config'])
    # nothing was overwritten; starting over is allowed
    k0 = next(iter(st['model']))
    assert torch.equal(torch.load(out/'last.pth', weights_only=True)['model'][k0], st['model'][k0])
    assert train('rotation', 'fmnist', 'test', out=out, monitor=False, lr=0.1, resume=False)['history']

class StopAfter(Callback):
    order = 100
    def __init__(self, n): self.n = n
    def after_epoch(self):
        if self.epoch == self.n: raise CancelFitException()

@pytest.mark.parametrize('method', ['moco_v1', 'simsiam', 'relative_loc', 'supervised'])
def test_resume_is_exact(method, tmp_path):
    def make(path): set_seed(0); return ssl_learner(_small(), method, 'test', path=path, bs=64, width=8, device='cpu')
    a = make(tmp_path/'a'); a.fit_one_cycle(2, 0.05)
    b = make(tmp_path/'b'); b.fit_one_cycle(2, 0.05, cbs=StopAfter(0))
    torch.rand(100)
    c = make(tmp_path/'b'); start = load_checkpoint(c, tmp_path/'b'/'last.pth'); assert start == 1
    c.fit_one_cycle(2, 0.05, start_epoch=start)
    sa, sc = a.model.state_dict(), c.model.state_dict()
    assert sa.keys() == sc.keys()
    for k in sa: assert torch.equal(sa[k], sc[k]), k

# --- B: the history travels with the checkpoint ----------------------------------------------------------------

def test_history_travels_with_the_checkpoint(tmp_path):
    out = tmp_path/'run'
    train('rotation', 'fmnist', 'test', out=out, epochs=2, monitor=False)
    log = json.loads((out/'log.json').read_text())
    log['history'] = log['history'][:1]; (out/'log.json').write_text(json.dumps(log))   # killed between the writes
    s = train('rotation', 'fmnist', 'test', out=out, epochs=2, monitor=False)
    assert [h['epoch'] for h in s['history']] == [0, 1]
    assert [h['epoch'] for h in json.loads((out/'train.json').read_text())['history']] == [0, 1]
    assert [h['epoch'] for h in json.loads((out/'log.json').read_text())['history']] == [0, 1]

# --- C: meaningless numbers are refused where they enter; a diverged run stops and keeps its last finite state -----

@pytest.mark.parametrize('lr', [NAN, -0.1, 0, math.inf])
def test_bad_lr_is_refused(lr, tmp_path, capsys):
    with pytest.raises(ValueError, match='lr must be a finite number > 0'): get_tier('test', lr=lr)
    with pytest.raises(ValueError, match='lr must be a finite number > 0'):
        ssl_learner(_small(), 'rotation', 'test', bs=64, device='cpu', lr=lr)
    with pytest.raises(SystemExit) as e:
        main(['train', 'rotation', '--tier', 'test', '--out', str(tmp_path), '--lr', str(lr)])
    assert e.value.code == 2 and f'lr must be a finite number > 0, got {float(str(lr))!r}' in capsys.readouterr().err
    assert not (tmp_path/'last.pth').exists()

def test_bad_tier_numbers_are_refused():
    for kw in [dict(wd=NAN), dict(wd=-1.), dict(size=0)]:
        with pytest.raises(ValueError, match=next(iter(kw))): get_tier('test', **kw)

@pytest.mark.parametrize('knn', [dict(T=NAN), dict(T=0.), dict(ks=(0,)), dict(T=math.inf)])
def test_bad_eval_settings_are_refused(knn, tmp_path, capsys):
    with pytest.raises(ValueError, match='knn setting'):
        evaluate('random', 'knn', 'fmnist', 'test', overrides=dict(knn=knn))
    if 'T' in knn:
        with pytest.raises(SystemExit) as e:
            main(['eval', 'random', '--tier', 'test', '--T', str(knn['T']), '--out', str(tmp_path/'e.json')])
        assert e.value.code == 2 and 'knn setting T=' in capsys.readouterr().err
        assert not (tmp_path/'e.json').exists()

def test_nan_loss_stops_and_keeps_the_last_finite_checkpoint():
    with pytest.raises(FloatingPointError, match='became nan') as e: _diverge()
    out = Path(re.search(r'(\S+/last\.pth)', str(e.value)).group(1)).parent
    st = torch.load(out/'last.pth', weights_only=True)
    assert st['epoch'] == 1 and all(torch.isfinite(v).all() for v in st['model'].values() if v.is_floating_point())
    assert [h['epoch'] for h in json.loads((out/'log.json').read_text())['history']] == [0]

def test_non_finite_weights_are_never_checkpointed(tmp_path):
    "Weights that turn nan on the last step of an epoch: the loss was finite, the end-of-epoch check catches it."
    class PoisonLastStep(Callback):
        order = 100
        def after_step(self):
            if self.epoch == 1 and self.iter == self.n_iter - 1:
                with torch.no_grad(): next(self.model.parameters()).fill_(NAN)
    set_seed(0); learn = ssl_learner(_small(), 'rotation', 'test', path=tmp_path, bs=64, width=8, device='cpu')
    with pytest.raises(FloatingPointError, match='non-finite'): learn.fit_one_cycle(2, 0.05, cbs=PoisonLastStep())
    assert torch.load(tmp_path/'last.pth', weights_only=True)['epoch'] == 1

def test_non_finite_backbones_are_not_evaluated():
    p = _nan_backbone()
    with pytest.raises(ValueError, match=f'{p}: non-finite weights'): evaluate(p, 'knn', 'fmnist', 'test')
    class Inf(torch.nn.Module):
        def forward(self, x): return torch.full((len(x), 4), math.inf)
    with pytest.raises(ValueError, match='non-finite features'):
        extract_features(Inf(), torch.zeros(3, 1, 8, 8, dtype=torch.uint8))

# --- D: file-system problems, interruptions ----------------------------------------------------------------------

@contextmanager
def _read_only_dir(path):
    path.mkdir()
    if os.geteuid() != 0: path.chmod(0o555); undo = lambda: path.chmod(0o755)
    elif shutil.which('chattr') and subprocess.run(['chattr', '+i', str(path)], capture_output=True).returncode == 0:
        undo = lambda: subprocess.run(['chattr', '-i', str(path)], capture_output=True)
    else: pytest.skip('cannot make a read-only directory here')
    try: yield path
    finally: undo()

def test_unwritable_out_fails_before_any_work(tmp_path, capsys, monkeypatch):
    def no_work(*a, **k): raise AssertionError('work started before the output was checked')
    monkeypatch.setattr('ssl_learn.learner.prepare_data', no_work)
    monkeypatch.setattr('ssl_learn.cli.evaluate', no_work)
    (tmp_path/'file').write_text('x')
    for args, code, msg in [(['train', 'rotation', '--out', tmp_path/'file'], 2, 'is a file, not a directory'),
                            (['eval', 'random', '--out', tmp_path/'file'/'e.json'], 2, 'is a file, not a directory')]:
        with pytest.raises(SystemExit) as e: main([str(a) for a in args] + ['--tier', 'test'])
        err = capsys.readouterr().err
        assert e.value.code == code and msg in err and len(err.strip().splitlines()) == 1, err
    with _read_only_dir(tmp_path/'ro') as ro:
        for args in (['train', 'rotation', '--out', ro], ['eval', 'random', '--out', ro/'e.json']):
            with pytest.raises(SystemExit) as e: main([str(a) for a in args] + ['--tier', 'test'])
            err = capsys.readouterr().err
            assert e.value.code == 1, err
            assert re.search(rf'cannot write {ro}: (permission denied|operation not permitted)', err), err

def test_os_errors_are_one_line(tmp_path, capsys, monkeypatch):
    for no, msg in [(errno.ENOSPC, 'no space left on the disk holding /x/e.json'),
                    (errno.EACCES, 'cannot write /x/e.json: permission denied'),
                    (errno.EROFS, 'cannot write /x/e.json: read-only file system')]:
        fail = mock.Mock(side_effect=OSError(no, os.strerror(no), '/x/e.json'))
        monkeypatch.setattr('ssl_learn.cli.evaluate', fail)
        with pytest.raises(SystemExit) as e: main(['eval', 'random', '--tier', 'test', '--out', str(tmp_path/'e.json')])
        err = capsys.readouterr().err
        assert e.value.code == 1 and err.strip() == f'ssl_learn eval: error: {msg}', err

def test_full_disk_says_disk(capsys):
    if not Path('/dev/full').exists(): pytest.skip('no /dev/full')
    with pytest.raises(SystemExit) as e: _full_disk_train()
    err = capsys.readouterr().err
    assert e.value.code == 1 and 'no space left on the disk holding' in err and 'last.pth' in err, err
    assert 'Traceback' not in err

def test_ctrl_c_says_how_to_resume(capsys):
    try:
        with pytest.raises(SystemExit) as e: _interrupt(KeyboardInterrupt())
    except KeyboardInterrupt: pytest.fail('a raw KeyboardInterrupt escaped')
    err = capsys.readouterr().err
    assert e.value.code == 130 and 'the state after epoch 1/1 is kept in' in err, err
    assert 'resume with: ssl_learn train' in err
    assert '--no-resume' not in err.split('resume with:')[1]

def _env(): return dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')

def _wait_for(cond, p, timeout=180):
    t = time.time()
    while not cond():
        if p.poll() is not None: raise AssertionError(f'process ended early: {p.communicate()}')
        if time.time() - t > timeout: raise AssertionError('timed out')
        time.sleep(0.1)

def _long_train(out):
    return subprocess.Popen([str(BIN), 'train', 'rotation', '--tier', 'test', '--out', str(out), '--epochs', '40',
                             '--no-monitor'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())

def test_sigterm_keeps_state_and_prints_the_resume_command(tmp_path):
    out = tmp_path/'run'; p = _long_train(out)
    try:
        _wait_for(lambda: (out/'last.pth').exists(), p)
        p.terminate(); _, err = p.communicate(timeout=120)
    finally: p.kill()
    assert p.returncode == 143, (p.returncode, err[-2000:])
    assert 'Traceback' not in err and f"is kept in {out/'last.pth'}" in err, err
    cmd = shlex.split(err.split('resume with: ')[1].strip().splitlines()[0])
    assert cmd[:2] == ['ssl_learn', 'train'] and str(out) in cmd
    p2 = subprocess.Popen([str(BIN)] + cmd[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        lines = []
        for line in p2.stdout:
            lines.append(line)
            if 'Resuming from' in line: break
        p2.terminate(); p2.communicate(timeout=120)
    finally: p2.kill()
    assert any(re.search(r'Resuming from .*last\.pth at epoch [1-9]\d*/40', l) for l in lines), lines

# --- E: one writer per run directory --------------------------------------------------------------------------

def test_second_writer_is_refused(tmp_path):
    out = tmp_path/'run'; p = _long_train(out)
    try:
        _wait_for(lambda: (out/'last.pth').exists(), p)
        with open(out/'.lock', 'a') as f:   # the first writer holds the run directory's lock
            with pytest.raises(BlockingIOError): fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        t = time.time()
        with pytest.raises(BlockingIOError, match=f'{out} is in use by another training'):
            train('rotation', 'fmnist', 'test', out=out, epochs=40, monitor=False)
        assert time.time() - t < 5
    finally: p.terminate(); p.communicate(timeout=120); p.kill()

# --- F: devices and kNN k checked before work ---------------------------------------------------------------

def test_cuda_without_cuda_fails_at_once(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(ValueError, match='CUDA is not available'): default_device('cuda')
    with pytest.raises(ValueError, match='CUDA is not available'):
        ssl_learner(_small(), 'rotation', 'test', bs=64, device='cuda')
    assert default_device() == torch.device('cpu') and default_device('cpu') == torch.device('cpu')

def test_knn_k_is_checked_before_extraction(monkeypatch):
    import ssl_learn.features as F
    def no_work(*a, **k): raise AssertionError('features extracted before k was checked')
    monkeypatch.setattr(F, '_extract_pooled', no_work)
    with pytest.raises(ValueError, match='k=100000 is larger than the 512 labeled training images'):
        evaluate('random', 'knn', 'fmnist', 'test', overrides=dict(knn=dict(ks=(10, 100000))))

# --- G: atomic_save ---------------------------------------------------------------------------------------------

def test_atomic_save_fsyncs_before_the_rename(tmp_path, monkeypatch):
    calls, real_fsync, real_replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, 'fsync', lambda fd: (calls.append(('fsync', os.path.realpath(f'/proc/self/fd/{fd}'))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, 'replace', lambda a, b: (calls.append(('replace', str(b))), real_replace(a, b))[1])
    atomic_save({'w': torch.ones(2)}, tmp_path/'a.pth')
    kinds = [c[0] for c in calls]
    assert kinds[:2] == ['fsync', 'replace'] and '.a.pth.tmp' in calls[0][1], calls
    assert ('fsync', os.path.realpath(tmp_path)) in calls[2:], calls    # the directory entry too

def test_atomic_save_onto_a_directory(tmp_path):
    (tmp_path/'d').mkdir()
    with pytest.raises(IsADirectoryError) as e: atomic_save({'a': 1}, tmp_path/'d')
    assert f"{tmp_path/'d'}" in str(e.value) and 'is a directory' in str(e.value) and '.tmp' not in str(e.value)
    assert [p.name for p in tmp_path.iterdir()] == ['d'] and not any((tmp_path/'d').iterdir())
