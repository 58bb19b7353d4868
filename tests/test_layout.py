"""The package's shape, checked: layers import downwards only, methods import no other method, no cycles, no hidden imports."""
import ast
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parents[1]/'ssl_learn'
# each module's layer: a module may import only modules of a lower or equal layer (equal: within its package)
LAYERS = {'compat': 0, 'core': 1, 'data': 2, 'augment': 2, 'explore': 2, 'scenes': 2, 'vit': 3, 'models': 4,
          'features': 5, 'losses': 5, 'momentum': 5, 'batchnorm': 5, 'memory': 5, 'distributed': 5, 'cluster': 6,
          'method': 7, 'methods': 8, 'learner': 8, 'eval': 9, 'bench': 10, 'cli': 11}

def modules():
    for p in sorted(PKG.rglob('*.py')):
        if p.name == '_modidx.py': continue
        yield '.'.join(p.relative_to(PKG.parent).with_suffix('').parts).removesuffix('.__init__'), p

def imports(name, path, top_only=True):
    "ssl_learn modules that `name` imports (relative imports resolved); `top_only`: module-level statements only."
    tree = ast.parse(path.read_text()); out = []
    nodes = tree.body if top_only else [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    walk = (lambda n: [n]) if top_only else (lambda f: [x for x in ast.walk(f) if x is not f])
    pkg = name.split('.') if path.name == '__init__.py' else name.split('.')[:-1]
    for n in nodes:
        for x in walk(n):
            if isinstance(x, ast.ImportFrom):
                base = pkg[:len(pkg) - x.level + 1] if x.level else []
                mod = '.'.join(base + ([x.module] if x.module else []))
                if mod.startswith('ssl_learn'):
                    subs = [f'{mod}.{a.name}' for a in x.names if (PKG.parent/f"{mod}.{a.name}".replace('.', '/')).with_suffix('.py').exists()]
                    out += subs or [mod]
            elif isinstance(x, ast.Import): out += [a.name for a in x.names if a.name.startswith('ssl_learn')]
    return out

def layer(mod):
    parts = mod.split('.')
    return LAYERS.get(parts[1], -1) if len(parts) > 1 else -1

def test_every_module_has_a_layer():
    assert [m for m, _ in modules() if m != 'ssl_learn' and layer(m) < 0] == []

def test_imports_go_down_the_layers():
    bad = [(m, i) for m, p in modules() for i in imports(m, p) if m != 'ssl_learn' and layer(i) > layer(m)]
    assert bad == []

def test_no_method_imports_another_method():
    bad = [(m, i) for m, p in modules() if m.startswith('ssl_learn.methods.')
           for i in imports(m, p) + imports(m, p, top_only=False) if i.startswith('ssl_learn.methods')]
    assert bad == []

def test_evaluation_does_not_import_training():
    bad = [(m, i) for m, p in modules() if m.startswith(('ssl_learn.eval', 'ssl_learn.features'))
           for i in imports(m, p) + imports(m, p, top_only=False) if i.startswith(('ssl_learn.learner', 'ssl_learn.methods'))]
    assert bad == []

def test_no_cycles():
    g = {m: set(imports(m, p)) for m, p in modules()}
    seen, stack, cycles = set(), [], []
    def visit(m):
        if m in stack: cycles.append(stack[stack.index(m):] + [m]); return
        if m in seen: return
        seen.add(m); stack.append(m)
        for n in g.get(m, ()): visit(n)
        stack.pop()
    for m in g: visit(m)
    assert cycles == []

def test_no_lazy_imports_of_the_package():
    "An import inside a function hides a dependency from the reader and from this test; only the registry and the old-path forwarder load modules by name (importlib)."
    bad = [(m, i) for m, p in modules() for i in imports(m, p, top_only=False)]
    assert bad == []

def test_the_check_sees_a_bad_import(tmp_path):
    "The import reader finds a relative import of another method (the test would catch one coming back)."
    p = tmp_path/'a.py'; p.write_text('from .moco import grouped\ndef f():\n    from ..learner import train\n')
    assert imports('ssl_learn.methods.a', p) == ['ssl_learn.methods.moco']
    assert imports('ssl_learn.methods.a', p, top_only=False) == ['ssl_learn.learner']
