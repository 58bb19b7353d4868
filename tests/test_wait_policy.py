"""`import ssl_learn` sets OpenMP's wait policy to PASSIVE unless the user chose one
(results/foundation/omp_wait_policy.md has the measured reason)."""
import os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _policy_after_import(env_value):
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    if env_value is not None: env['OMP_WAIT_POLICY'] = env_value
    r = subprocess.run([sys.executable, '-c', "import os, ssl_learn; print(os.environ.get('OMP_WAIT_POLICY'))"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()

def test_import_sets_passive_when_unset():
    assert _policy_after_import(None) == 'PASSIVE'

def test_a_users_choice_is_kept():
    assert _policy_after_import('ACTIVE') == 'ACTIVE'

def test_torch_first_is_left_alone_and_said():
    "Set after torch has loaded OpenMP, the variable would change nothing here: it is not set, and the record says why."
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    r = subprocess.run([sys.executable, '-c', "import os, torch, ssl_learn; from ssl_learn.core import machine_info; "
                        "print(os.environ.get('OMP_WAIT_POLICY'), '|', machine_info()['omp_wait_policy'])"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == 'None | unset (torch was loaded before ssl_learn)'
