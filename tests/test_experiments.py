"experiments/: every experiment runs as `python -m experiments.NAME` (its --help exits 0, lightly or not), and none of them manipulates sys.path or monkey-patches the library."
import ast, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT/'experiments'
NAMES = ['compare_lightly', 'compare_lightly_mae', 'simclr_aug_ablation', 'simclr_checks', 'mae_mask_ratio',
         'bench_foundation', 'bench_kmeans', 'bench_knn_search', 'throughput', 'profile_step', 'ddp_equality',
         'ddp_torchrun', 'gpu_check', 'dense_cpu_throughput', 'dense_cpu_timing', 'tier_study', 'widget_state_sizes',
         'omp_wait_policy', 'fused_group_bn', 'dense_settings', 'relative_loc_scale', 'swav_recipe',
         'grouped_bn_layout', 'bf16_cpu', 'monitor_bf16', 'malloc_tuning', 'compile_cpu', 'cluster_bf16', 'onednn_matmul']


def test_the_experiments_are_all_listed():
    assert (EXP/'__init__.py').exists()
    assert sorted(p.stem for p in EXP.glob('*.py') if p.stem != '__init__') == sorted(NAMES)


def test_scripts_keeps_tooling_only():
    assert sorted(p.name for p in (ROOT/'scripts').iterdir() if p.is_file()) == ['build_docs.py', 'check_jupyter.py', 'check_site.py', 'gpu_check.sh', 'make_readme.py',
                                                                                    'setup.sh']


@pytest.mark.parametrize('name', NAMES)
def test_help(name):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    r = subprocess.run([sys.executable, '-m', f'experiments.{name}', '--help'], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'usage:' in r.stdout and f'experiments.{name}' in r.stdout


def _library_names(tree) -> set:
    "Names bound to anything imported from ssl_learn (its modules, classes, functions), anywhere in the file."
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == 'ssl_learn' or a.name.startswith('ssl_learn.'):
                    names.add(a.asname or a.name.split('.')[0])
        elif isinstance(node, ast.ImportFrom) and node.module and (node.module == 'ssl_learn' or node.module.startswith('ssl_learn.')):
            names.update(a.asname or a.name for a in node.names)
    return names


def _root(node):
    while isinstance(node, (ast.Attribute, ast.Subscript)): node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _patches(path: Path) -> list:
    "Assignments (=, +=, annotated, del) to attributes of anything imported from ssl_learn, and setattr/delattr on it."
    tree = ast.parse(path.read_text()); lib = _library_names(tree); out = []
    for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, (ast.Assign, ast.Delete)) else
                   [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for t in targets:
            for e in (t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t]):
                if isinstance(e, ast.Attribute) and _root(e) in lib: out.append(f'{path.name}:{node.lineno}: {ast.unparse(e)}')
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ('setattr', 'delattr')
                and node.args and _root(node.args[0]) in lib):
            out.append(f'{path.name}:{node.lineno}: {ast.unparse(node)}')
    return out


def test_no_sys_path_and_no_monkey_patching():
    files = sorted(EXP.glob('*.py'))
    assert files
    bad = [f'{p.name}:{i}: {l.strip()}' for p in files for i, l in enumerate(p.read_text().splitlines(), 1) if 'sys.path' in l]
    assert not bad, 'sys.path manipulation (import experiments.X instead):\n' + '\n'.join(bad)
    bad = [x for p in files for x in _patches(p)]
    assert not bad, 'the library is monkey-patched (build the variant in the experiment):\n' + '\n'.join(bad)


def test_the_patch_check_catches_patches(tmp_path):
    f = tmp_path/'x.py'
    f.write_text('import ssl_learn.augment as A\nfrom ssl_learn.methods.simclr import SimCLR\nimport ssl_learn.learner\n'
                 'def f():\n    import ssl_learn.learner as L\n    L.torch = None\n'
                 'A.view_preset = len\nSimCLR.forward = len\nssl_learn.learner.torch = None\nsetattr(A, "x", 1)\nok = A.view_preset\n')
    assert len(_patches(f)) == 5
