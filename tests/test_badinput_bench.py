"""Issue 16, `ssl_learn bench` and ODC: nothing silently wrong, nothing lost.

`CASES` lists each bad input or fault, what the user sees, and a zero-argument check that reproduces it (a docs page
renders them as a table); `test_case` runs every check and looks for the last `backticked` part of `sees` in what
it printed, warned or raised. The named tests below check the same behaviours in more detail."""
import contextlib, io, json, os, re, signal, subprocess, sys, tempfile, time, warnings
from pathlib import Path
import pytest, torch
import ssl_learn.bench.run as run
from ssl_learn.bench.run import bench, bench_dir, bench_methods, pretrain, run_dir

SSL = Path(sys.executable).parent/'ssl_learn'


# ---- fakes of the two expensive steps, so `bench`'s bookkeeping runs in milliseconds

def _fakes(monkeypatch, calls=None):
    "Replace `pretrain` and `run_protocols` in `ssl_learn.bench.run` by fakes that write what the real ones write."
    calls = [] if calls is None else calls
    def fake_pretrain(method, tier='cpu', data='fmnist', runs='runs', out='results/bench', force=False, size=None,
                      on_error='raise'):
        d = run_dir(runs, method, tier, data); tj = d/'train.json'
        calls.append(('train', method, data))
        if force or not tj.exists():
            print(f"== train {method} ({tier}) -> {d}", flush=True)
            d.mkdir(parents=True, exist_ok=True); (d/'backbone.pth').write_bytes(b'fake')
            tj.write_text(json.dumps(dict(method=method, data=data, tier=tier, epochs=1, seconds=time.time(),
                                          commit='fake', time=time.strftime('%H:%M:%S'), history=[])))
            status = 'trained'
        else: status = 'done before'
        return dict(status=status, backbone=str(d/'backbone.pth'), **run.train_summary(tj))
    def fake_protocols(name, spec, protocols, tier, data, ev, settings, pretrain_info=None, bench_command='', size=None,
                       on_error='raise', force=False):
        calls.append(('eval', name, data, tuple(protocols)))
        pi = {k: v for k, v in (pretrain_info or {}).items() if k != 'status'} or None
        for p in protocols:
            (Path(ev)/f'{name}_{p}.json').write_text(json.dumps(dict(
                rows=[dict(settings_name=settings)], name=name, wall_seconds=0.1,
                bench=dict(settings=settings, pretrain=pi))))
        return {p: dict(status='ran', seconds=0.1, peak_memory_mb=None) for p in protocols}
    monkeypatch.setattr(run, 'pretrain', fake_pretrain)
    monkeypatch.setattr(run, 'run_protocols', fake_protocols)
    return calls

@contextlib.contextmanager
def _patched():
    "`_fakes` outside pytest (for the `CASES` checks)."
    mp = pytest.MonkeyPatch(); calls = _fakes(mp)
    try: yield calls
    finally: mp.undo()

def _quiet(f, *a, **kw):
    with contextlib.redirect_stdout(io.StringIO()): return f(*a, **kw)

def _statuses(log):
    return {n: r.get('status') or r.get('train', {}).get('status') for n, r in log['results'].items()}


# ---- item 1: what defines a result is in its key (data, tier, method, protocol) or in a check (settings, backbone)

def _data_b_after_data_a():
    with tempfile.TemporaryDirectory() as t, _patched() as calls:
        t = Path(t)
        a, b = f"folder:{t/'a'}", f"folder:{t/'b'}"
        kw = dict(out=t/'res', runs=t/'runs', baselines=())
        _quiet(bench, 'test', 'rotation', 'knn,linear', data=a, **kw)
        log = bench('test', 'rotation', 'knn,linear', data=b, **kw)
        st = _statuses(log)
        assert st == {'rotation': 'trained'}, st
        assert ('eval', 'rotation', b, ('knn', 'linear')) in calls, calls
        assert (bench_dir(t/'res', 'test', b)/'eval/rotation_knn.json').exists()

def _other_settings():
    with tempfile.TemporaryDirectory() as t, _patched() as calls:
        t = Path(t); kw = dict(out=t/'res', runs=t/'runs', baselines=())
        _quiet(bench, 'test', 'rotation', 'knn', settings='cpu_bench', **kw)
        calls.clear()
        log = bench('test', 'rotation', 'knn', **kw)                       # the test tier's own settings: 'test'
        assert ('eval', 'rotation', 'fmnist', ('knn',)) in calls, (calls, log['results'])
        d = json.loads((bench_dir(t/'res', 'test')/'eval/rotation_knn.json').read_text())
        assert d['bench']['settings'] == 'test', d

def _retrained_backbone():
    with tempfile.TemporaryDirectory() as t, _patched() as calls:
        t = Path(t); kw = dict(out=t/'res', runs=t/'runs', baselines=())
        _quiet(bench, 'test', 'rotation', 'knn,linear', **kw)
        _quiet(bench, 'test', 'rotation', 'knn', force=True, **kw)         # retrains; re-runs knn only
        calls.clear()
        log = bench('test', 'rotation', 'knn,linear', **kw)                # linear was from the old backbone
        assert ('eval', 'rotation', 'fmnist', ('linear',)) in calls, (calls, log['results'])


def test_bench_result_is_keyed_by_data_and_checked_for_settings(tmp_path, monkeypatch, capsys):
    "Data B after data A runs everything; a result written with other protocol settings is run again, saying why."
    calls = _fakes(monkeypatch)
    kw = dict(out=tmp_path/'res', runs=tmp_path/'runs', baselines=())
    a, b = f"folder:{tmp_path/'a'}", f"folder:{tmp_path/'b'}"
    bench('test', 'rotation', 'knn', data=a, **kw)
    log = bench('test', 'rotation', 'knn', data=b, **kw)
    assert _statuses(log) == {'rotation': 'trained'} and ('eval', 'rotation', b, ('knn',)) in calls
    assert bench('test', 'rotation', 'knn', data=b, **kw)['results']['rotation'] == {'status': 'done before'}
    capsys.readouterr(); calls.clear()
    log = bench('test', 'rotation', 'knn', data=b, settings='cpu_bench', **kw)
    out = capsys.readouterr().out
    assert ('eval', 'rotation', b, ('knn',)) in calls, f"a result at settings 'test' counted as done: {out}"
    assert "rotation knn: recorded with settings 'test', not 'cpu_bench': re-running" in out, out
    assert log['results']['rotation']['rerun'] == {'knn': "recorded with settings 'test', not 'cpu_bench'"}


def test_relative_folder_data_is_keyed_by_its_full_path(tmp_path, monkeypatch):
    "`folder:imgs` from two working directories are two data sets, so two result folders."
    monkeypatch.chdir(tmp_path)
    assert bench_dir('res', 'test', 'folder:imgs') == Path('res')/f"folder:{tmp_path/'imgs'}"/'test'
    assert run_dir('runs', 'simclr', 'test', 'folder:imgs') == Path('runs')/f"folder:{tmp_path/'imgs'}"/'test/simclr'
    assert bench_dir('res', 'test', 'fmnist') == Path('res/fmnist/test')


def test_result_of_a_retrained_backbone_is_run_again(tmp_path, monkeypatch, capsys):
    "`--force --protocols knn` retrains and re-runs kNN; the linear result of the old backbone is then run again."
    _retrained_backbone()
    assert 'recorded for another pre-training' in capsys.readouterr().out


def test_pretrain_of_other_data_is_not_done(tmp_path, monkeypatch):
    "A finished-looking run folder whose train.json records another data set or tier is trained again."
    d = run_dir(tmp_path/'runs', 'rotation', 'test', 'fmnist'); d.mkdir(parents=True)
    (d/'backbone.pth').write_bytes(b'x')
    (d/'train.json').write_text(json.dumps(dict(method='rotation', data='cifar10', tier='test', epochs=1, history=[])))
    cmds = []
    def fake_child(cmd):
        cmds.append(cmd)
        (d/'train.json').write_text(json.dumps(dict(method='rotation', data='fmnist', tier='test', epochs=1,
                                                    history=[])))
        return subprocess.CompletedProcess(cmd, 0, '', '')
    monkeypatch.setattr(run, '_run_child', fake_child, raising=False)
    monkeypatch.setattr(run.subprocess, 'run', lambda cmd, **kw: fake_child(cmd))   # the code before the fix
    info = pretrain('rotation', 'test', 'fmnist', tmp_path/'runs', tmp_path/'res')
    assert info['status'] == 'trained' and cmds and '--no-resume' in cmds[0], info


# ---- item 2: the runner's children die with it

def _children(pid:int, word:str='train') -> list:
    "Pids whose parent is `pid` and whose command line has `word` (from /proc; not the runner's brief `git` calls)."
    out = []
    for p in Path('/proc').iterdir():
        if not p.name.isdigit(): continue
        try: st, cl = (p/'stat').read_text(), (p/'cmdline').read_bytes().split(b'\0')
        except OSError: continue
        if int(st.rsplit(')', 1)[1].split()[1]) == pid and word.encode() in cl: out.append(int(p.name))
    return out

def _alive(pid:int) -> bool:
    "Running (a zombie waiting for its reaper counts as dead)."
    try: return (Path('/proc')/str(pid)/'stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError: return False

def _start_bench(tmp:Path):
    cmd = [str(SSL) if SSL.exists() else sys.executable, *([] if SSL.exists() else
           ['-c', 'from ssl_learn.cli import main; main()']),
           'bench', '--tier', 'test', '--methods', 'rotation', '--protocols', 'knn', '--no-baselines',
           '--out', str(tmp/'res'), '--runs', str(tmp/'runs')]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while time.time() - t0 < 120:
        kids = _children(p.pid)
        if kids: return p, kids[0]
        if p.poll() is not None: raise AssertionError(f"bench exited {p.returncode}: {p.stdout.read()}")
        time.sleep(0.05)
    p.kill(); raise AssertionError("bench started no child in 120 s")

def _gone_after(sig:int, wait:float=3.):
    "Start a bench, signal the runner once its training child exists; seconds until that child is gone."
    with tempfile.TemporaryDirectory() as t:
        t = Path(t); p, child = _start_bench(t)
        try:
            os.kill(p.pid, sig); out = p.communicate(timeout=30)[0]; t0 = time.time()
            while _alive(child) and time.time() - t0 < wait: time.sleep(0.05)
            dt = time.time() - t0
            assert not _alive(child), (f"child {child} still running {dt:.1f} s after signal {sig} to the runner "
                                       f"(exit {p.returncode}):\n{out}")
            log = bench_dir(t/'res', 'test')/'log.json'
            rec = json.loads(log.read_text())['runs'][-1] if log.exists() else None
            print(f"child {child} gone {dt:.1f} s after {signal.Signals(sig).name} to the runner (exit {p.returncode})")
            return dt, p.returncode, out, rec
        finally:
            if _alive(child): os.kill(child, signal.SIGKILL)

def _kill9():
    _gone_after(signal.SIGKILL)

def _sigterm():
    _, rc, out, rec = _gone_after(signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM and rec is not None and rec.get('stopped') == 'SIGTERM', (rc, rec)
    print(out)


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG and /proc are Linux only')
def test_kill_9_of_the_runner_takes_its_child_down():
    "`kill -9` of `ssl_learn bench` while it trains: the `ssl_learn train` child is gone within 3 s."
    dt, rc, _, _ = _gone_after(signal.SIGKILL)
    assert rc == -signal.SIGKILL and dt < 3


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='/proc is Linux only')
def test_sigterm_of_the_runner_kills_its_child_and_records_the_call():
    "SIGTERM: the child's process group is killed, the call is recorded in log.json as stopped, exit status 143."
    _sigterm()


def test_child_has_its_own_group_and_dies_with_its_parent():
    "`_run_child` starts the child as the leader of its own process group, with SIGKILL as its parent-death signal."
    code = ('import os, ctypes; s = ctypes.c_int(); ctypes.CDLL(None).prctl(2, ctypes.byref(s)); '
            'print(os.getpgid(0) == os.getpid(), s.value)')
    r = run._run_child([sys.executable, '-c', code])
    assert r.returncode == 0 and r.stdout.split() == ['True', str(int(signal.SIGKILL))], r


# ---- item 3: supervised, listed by `ssl_learn methods`, is accepted by `bench --methods`, and trained once

def _supervised():
    with tempfile.TemporaryDirectory() as t, _patched() as calls:
        t = Path(t)
        log = bench('test', 'supervised', 'knn', out=t/'res', runs=t/'runs')       # baselines on: supervised is one
        trained = [c for c in calls if c[:2] == ('train', 'supervised')]
        assert len(trained) == 1 and list(log['results']) == ['random', 'pixels', 'supervised', 'vit_random'], (calls, log)


def test_bench_accepts_supervised_and_runs_it_once(tmp_path, monkeypatch):
    assert bench_methods('supervised') == ['supervised'] and bench_methods('rotation,supervised') == [
        'supervised', 'rotation']
    assert 'supervised' not in bench_methods('all')             # 'all' means the methods; baselines come separately
    calls = _fakes(monkeypatch)
    log = bench('test', 'supervised,rotation', 'knn', out=tmp_path/'res', runs=tmp_path/'runs')
    assert [c[1] for c in calls if c[0] == 'train'] == ['supervised', 'rotation']
    assert list(log['results']) == ['random', 'pixels', 'supervised', 'vit_random', 'rotation'] and not log['failed']
    log = bench('test', 'supervised', 'knn', out=tmp_path/'res2', runs=tmp_path/'runs', baselines=())
    assert list(log['results']) == ['supervised']


# ---- item 4: ODC is reproducible with a fixed seed

def _odc_runs(n:int=2, threads:int=4):
    "`n` fresh ODC runs at the test tier with seed 0, with `threads` intra-op threads: (backbone state, losses) each."
    from ssl_learn.learner import train
    old = torch.get_num_threads(); torch.set_num_threads(threads)
    res = []
    try:
        with tempfile.TemporaryDirectory() as t:
            for i in range(n):
                out = Path(t)/f'odc{i}'
                _quiet(train, 'odc', 'fmnist', tier='test', epochs=1, seed=0, out=out)
                sd = torch.load(out/'backbone.pth', weights_only=False)['state_dict']
                res.append((sd, json.loads((out/'log.json').read_text())['losses']))
    finally: torch.set_num_threads(old)
    return res

def _odc_identical():
    (a, la), (b, lb) = _odc_runs()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert la == lb, f"loss histories differ from step {next(i for i, (x, y) in enumerate(zip(la, lb)) if x != y)}"
    assert not diff, f"{len(diff)} backbone tensors differ, e.g. {diff[:3]}"
    print(f"odc: two runs, bit-identical backbones ({len(a)} tensors) and identical losses ({len(la)} steps)")


def test_odc_is_reproducible_with_a_fixed_seed():
    "Two fresh `train('odc', 'fmnist', tier='test', epochs=1, seed=0)` runs: bit-identical weights, same losses."
    _odc_identical()


def test_odc_memory_update_with_repeated_indices_is_deterministic():
    "A batch drawn with replacement repeats an image; the bank keeps the last of its features, every time."
    from ssl_learn.methods.odc import ODCMemory
    old = torch.get_num_threads(); torch.set_num_threads(4)
    try:
        g = torch.Generator().manual_seed(0)
        idx = torch.randint(512, (256,), generator=g); f = torch.randn(256, 128, generator=g)
        assert len(idx.unique()) < len(idx)
        banks = set()
        for _ in range(300):
            m = ODCMemory(512, 128, k=4); m.bank.zero_(); m.update(idx, f); banks.add(m.bank.numpy().tobytes())
        assert len(banks) == 1
        last = {int(i): j for j, i in enumerate(idx.tolist())}
        i, j = next((i, j) for i, j in last.items() if (idx == i).sum() > 1)
        assert torch.allclose(m.bank[i], torch.nn.functional.normalize(f[j], dim=0))
    finally: torch.set_num_threads(old)


# ---- the table

CASES = [
    dict(input='`ssl_learn bench` on data B after the same call on data A (same `--out` and `--runs`)',
         sees='B is pre-trained and evaluated from scratch into `<out>/<B>/<tier>/`; nothing is reported '
              '"done before" (printed: `== train rotation (test)`)',
         check=_data_b_after_data_a),
    dict(input='a result file written with other protocol settings (`--settings cpu_bench`, then the tier\'s own)',
         sees="the protocol is run again, saying why: `rotation knn: recorded with settings 'cpu_bench', not "
              "'test': re-running`",
         check=_other_settings),
    dict(input='a result of a backbone that was since retrained (`--force --protocols knn` leaves the old linear '
               'result)',
         sees='the stale result is run again: `rotation linear: recorded for another pre-training`',
         check=_retrained_backbone),
    dict(input='`kill -9` of the `ssl_learn bench` runner while its `ssl_learn train` child runs',
         sees='the child dies with it (parent-death signal), so no orphan keeps training into the run folder: '
              '`gone`',
         check=_kill9),
    dict(input='SIGTERM (or Ctrl-C) to the `ssl_learn bench` runner',
         sees='its child\'s process group is killed, the call is recorded in `log.json` as stopped, exit status 143: '
              '`stopped by SIGTERM`',
         check=_sigterm),
    dict(input='`ssl_learn bench --methods supervised` (listed by `ssl_learn methods`)',
         sees='accepted; the supervised baseline is trained once, like a method: `== train supervised (test)`',
         check=_supervised),
    dict(input='two fresh ODC runs with the same seed (a batch drawn with replacement repeats an image)',
         sees='bit-identical backbone weights and loss histories: `bit-identical`',
         check=_odc_identical),
]


@pytest.mark.parametrize('case', CASES, ids=lambda c: c['check'].__name__.strip('_'))
def test_case(case, capsys):
    "What `check` prints, warns or raises (not an AssertionError: that is the check failing) shows what `sees` says."
    err = ''
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        try: case['check']()
        except AssertionError: raise
        except Exception as e: err = f"{type(e).__name__}: {e}"
    cap = capsys.readouterr()
    text = '\n'.join([cap.out, cap.err, err, *(str(w.message) for w in ws)])
    frag = re.findall(r'`([^`]+)`', case['sees'])[-1]        # the last `backticked` part is what it shows
    assert frag in text, f"{frag!r} not in what the user sees:\n{text}"
