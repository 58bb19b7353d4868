"""`torchrun --nproc_per_node 2 -m ssl_learn.cli train METHOD` on the CPU (gloo), for every method: a run killed
(SIGKILL, launcher and ranks) after its first epoch's checkpoint resumes with the same command and finishes; and the
images/s of 1 process against 2 on this machine.

For each method, at `--tier` (default test) with `--epochs 2`:
1. 2 processes: start, wait for `last.pth` (epoch 1 saved), kill the whole process group, run the same command
   again: it must say "Resuming from" and finish with a 2-epoch history;
2. 2 processes, uninterrupted, and 1 process (`python -m ssl_learn.cli train`): images/s of the last epoch, from
   `train.json` (the images of all ranks; `ssl_learn.learner.Throughput`).
Each process runs one thread (`OMP_NUM_THREADS=1`), so 2 processes use the 2 cores that 1 process leaves half idle.
The machine's 1-minute load average before and after each timed run is recorded beside it: other work on a shared
machine slows both runs, and a test-tier epoch (8 steps) is short, so these are rough figures.

Writes `results/distributed/torchrun_cpu.json` with provenance.

Usage (from the repository root):
  python -m experiments.ddp_torchrun [--methods all|a,b] [--tier test] [--epochs 2] [--no-speed] [--no-resume]
                                     [--out PATH]
Recorded: `--no-speed` (all methods) → results/distributed/torchrun_cpu.json; `--no-resume --methods
rotation,simclr,moco_v2,byol --out results/distributed/torchrun_speed_cpu.json`.
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path

ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')

def _cmd(method, out, tier, epochs, nproc, port):
    train = ['-m', 'ssl_learn.cli', 'train', method, '--tier', tier, '--epochs', str(epochs), '--out', str(out)]
    if nproc == 1: return [sys.executable, *train]
    return [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(nproc), '--master_port', str(port),
            *train]

def _run(cmd, timeout=600):
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr

def kill_and_resume(method, out, tier, epochs, port) -> dict:
    "Start a 2-process run, SIGKILL it once `last.pth` exists, run it again; what happened."
    cmd = _cmd(method, out, tier, epochs, 2, port)
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0, killed = time.time(), False
    while p.poll() is None and time.time() - t0 < 600:
        if (out/'last.pth').exists() and not (out/'train.json').exists():
            os.killpg(p.pid, signal.SIGKILL); killed = True; break
        time.sleep(0.05)
    p.wait()
    rc, log = _run(_cmd(method, out, tier, epochs, 2, port + 1))
    s = json.loads((out/'train.json').read_text()) if (out/'train.json').exists() else {}
    hist = s.get('history', [])
    return dict(killed_after_epoch1=killed, resume_rc=rc, resumed='Resuming from' in log,
                epochs_done=len(hist), world_size=s.get('world_size'),
                ok=killed and rc == 0 and 'Resuming from' in log and len(hist) == epochs,
                log_tail=None if rc == 0 else log[-1500:])

def speed(method, root, tier, epochs, nproc, port) -> dict:
    out = root/f'{method}_{nproc}proc'
    t0, load0 = time.time(), os.getloadavg()[0]; rc, log = _run(_cmd(method, out, tier, epochs, nproc, port))
    if rc != 0: return dict(error=log[-1500:])
    h = json.loads((out/'train.json').read_text())['history'][-1]
    return dict(images_per_s=h['images_per_s'], seconds_train=h['seconds_train'], wall_s=round(time.time() - t0, 1),
                load_average_1min=[round(load0, 2), round(os.getloadavg()[0], 2)])   # other work on the machine

def main(argv=None):
    from ssl_learn.core import atomic_save, provenance
    from ssl_learn.method import list_methods
    p = argparse.ArgumentParser(prog='python -m experiments.ddp_torchrun', description=__doc__.split('\n')[0])
    p.add_argument('--methods', default='all'); p.add_argument('--tier', default='test')
    p.add_argument('--epochs', type=int, default=2); p.add_argument('--no-speed', action='store_true')
    p.add_argument('--no-resume', action='store_true', help='skip the kill-and-resume runs')
    p.add_argument('--out', default='results/distributed/torchrun_cpu.json')
    a = p.parse_args(argv)
    methods = list_methods() if a.methods == 'all' else a.methods.split(',')
    root = Path(tempfile.mkdtemp(prefix='ddp_torchrun_')); rows = {}
    try:
        for i, m in enumerate(methods):
            port = 29600 + 10 * i
            r = {} if a.no_resume else dict(resume=kill_and_resume(m, root/f'{m}_resume', a.tier, a.epochs, port))
            if not a.no_speed:
                r['one_process'] = speed(m, root, a.tier, a.epochs, 1, port + 3)
                r['two_processes'] = speed(m, root, a.tier, a.epochs, 2, port + 4)
                one, two = r['one_process'].get('images_per_s'), r['two_processes'].get('images_per_s')
                r['speedup'] = round(two / one, 2) if one and two else None
            rows[m] = r
            print(f"{m:14s} resume ok {r['resume']['ok'] if 'resume' in r else '-'}  "
                  + ('' if a.no_speed else f"1 proc {r['one_process'].get('images_per_s')} img/s, "
                     f"2 procs {r['two_processes'].get('images_per_s')} img/s, ×{r.get('speedup')}"), flush=True)
    finally: shutil.rmtree(root, ignore_errors=True)
    res = dict(tier=a.tier, epochs=a.epochs, rows=rows, all_resume_ok=None if a.no_resume else all(r['resume']['ok'] for r in rows.values()),
               note='images/s of the last epoch, all ranks together; one thread per process',
               **provenance(omp_num_threads=1, backend='gloo'))
    atomic_save(res, Path(a.out))
    print(f"every run resumed after a kill: {res['all_resume_ok']}; wrote {a.out}")

if __name__ == '__main__': main()
