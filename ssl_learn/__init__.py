__version__ = "0.0.1"

# OpenMP's wait policy matters on 2 cores (results/foundation/omp_wait_policy.md, `python -m
# experiments.omp_wait_policy`): beside another job, threads that spin while they wait (the default) take each other's
# cores and a training loop runs several times slower than with OMP_WAIT_POLICY=PASSIVE, while on a quiet machine
# PASSIVE is somewhat slower. ssl_learn leaves the choice to the user (the Makefile sets PASSIVE for `make test`, which
# runs notebooks side by side) and records it: results files carry `omp_wait_policy` (core.machine_info).
import os as _os
omp_wait_policy = _os.environ.get('OMP_WAIT_POLICY', 'unset')   # as the process started (OpenMP reads it once)
