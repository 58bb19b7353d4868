"""core.tune_malloc leaves a process alone when another allocator serves malloc (an LD_PRELOADed jemalloc or tcmalloc):
glibc's mallopt would succeed there but reach nothing, and `malloc_tuned` would claim a tuning that is not in effect."""
import os, platform, shutil, subprocess, sys
from pathlib import Path
import pytest

SHIM = r'''
#include <stddef.h>
void *__libc_malloc(size_t); void __libc_free(void *); void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *malloc(size_t n) { return __libc_malloc(n); }
void free(void *p) { __libc_free(p); }
void *calloc(size_t a, size_t b) { return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
'''

def _tuned(env) -> list[str]:
    code = 'import ssl_learn.core as c; print(c.malloc_tuned, c.release_free_memory())'
    r = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith('linux') or platform.libc_ver()[0] != 'glibc' or shutil.which('cc') is None,
                    reason='needs Linux with glibc and a C compiler')
def test_preloaded_allocator_is_left_alone(tmp_path: Path):
    (tmp_path/'shim.c').write_text(SHIM)
    so = tmp_path/'libshim.so'
    subprocess.run(['cc', '-shared', '-fPIC', '-O1', '-o', str(so), str(tmp_path/'shim.c')], check=True)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    for k in ('SSL_LEARN_MALLOC', 'LD_PRELOAD'): env.pop(k, None)      # the baseline: glibc's malloc, tuning on
    assert _tuned(env) == ['True', 'True']                        # glibc's own malloc: tuned
    assert _tuned(dict(env, LD_PRELOAD=str(so))) == ['False', 'False']   # another malloc: neither tuned nor trimmed
