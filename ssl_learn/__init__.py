__version__ = "0.0.1"

# OpenMP threads spin while they wait for work, unless told otherwise. On a machine where anything else runs, the
# spinning threads of two processes take each other's cores, and a training loop beside another job runs several
# times slower than with PASSIVE (measured: results/foundation/omp_wait_policy.md, `python -m
# experiments.omp_wait_policy`). OpenMP reads the variable once, when torch loads it, so it is set only when
# ssl_learn is imported before torch (as `ssl_learn ...` commands and the notebooks do), and a value the user has set
# is kept. `omp_wait_policy` says which policy this process runs with; results files record it (core.machine_info).
import os as _os, sys as _sys
if 'OMP_WAIT_POLICY' in _os.environ: omp_wait_policy = _os.environ['OMP_WAIT_POLICY']
elif 'torch' in _sys.modules: omp_wait_policy = 'unset (torch was loaded before ssl_learn)'
else: _os.environ['OMP_WAIT_POLICY'] = omp_wait_policy = 'PASSIVE'
