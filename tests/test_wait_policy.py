"""ssl_learn leaves OpenMP's wait policy to the user and records it (results/foundation/omp_wait_policy.md has the
measured trade-off)."""
import os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _run(env_value):
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    if env_value is not None: env['OMP_WAIT_POLICY'] = env_value
    r = subprocess.run([sys.executable, '-c', "import os, ssl_learn; from ssl_learn.core import machine_info; "
                        "print(os.environ.get('OMP_WAIT_POLICY'), '|', machine_info()['omp_wait_policy'])"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]

def test_import_leaves_the_policy_alone_and_records_it():
    assert _run(None) == 'None | unset'

def test_a_users_choice_is_recorded():
    assert _run('PASSIVE') == 'PASSIVE | PASSIVE'
