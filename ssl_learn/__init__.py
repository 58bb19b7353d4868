__version__ = "0.0.1"

# OpenMP threads spin while they wait for work, unless told otherwise. On a machine where anything else runs, the
# spinning threads of two processes take each other's cores, and a training loop beside another job runs several
# times slower than with PASSIVE (measured: results/foundation/omp_wait_policy.md, `python -m
# experiments.omp_wait_policy`). OpenMP reads the variable once, when torch loads it, so this only takes
# effect when ssl_learn is imported before torch (as `ssl_learn ...` commands and the notebooks do); a value the user
# has set is kept.
import os as _os
_os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
