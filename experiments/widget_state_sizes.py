"""Widget-state size of every page with explorers: read from the saved notebooks (each explorer's output carries its
state), and, when the docs were built, from the built pages' metadata (`_site_offline/build.json`).

Usage: python -m experiments.widget_state_sizes [--site _site_offline] [--out results/site/widget_state.json]
"""
import argparse, json
from pathlib import Path
from ssl_learn.core import provenance
from ssl_learn.explore import WIDGET_STATE, WIDGET_VIEW

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 1_000_000


def notebook_sizes(nbs=ROOT/'nbs') -> dict:
    "Per notebook with explorers: each explorer's frames, links, models and bytes of state, and the page total."
    out = {}
    for p in sorted(Path(nbs).glob('*.ipynb')):
        nb = json.loads(p.read_text()); ex = []
        for c in nb['cells']:
            for o in c.get('outputs', []):
                d = o.get('data', {})
                if WIDGET_STATE not in d: continue
                st = d[WIDGET_STATE]['state']; names = [m['model_name'] for m in st.values()]
                ex.append(dict(model_id=d[WIDGET_VIEW]['model_id'], frames=names.count('ImageModel'),
                               links=names.count('LinkModel'), models=len(st), bytes=len(json.dumps(d[WIDGET_STATE]))))
        if ex: out[p.name] = dict(explorers=ex, bytes=sum(e['bytes'] for e in ex), within_budget=sum(e['bytes'] for e in ex) <= BUDGET)
    return out


if __name__ == '__main__':
    ap = argparse.ArgumentParser(prog='python -m experiments.widget_state_sizes', description=__doc__.split('\n')[0])
    ap.add_argument('--site', default=str(ROOT/'_site_offline')); ap.add_argument('--out', default=str(ROOT/'results/site/widget_state.json'))
    a = ap.parse_args()
    b = Path(a.site)/'build.json'
    res = dict(budget_bytes=BUDGET, notebooks=notebook_sizes(),
               site_pages=json.loads(b.read_text()).get('widget_pages') if b.exists() else None, **provenance())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=2) + '\n')
    for n, r in res['notebooks'].items(): print(f"{n}: {r['bytes']/1e3:.0f} kB in {len(r['explorers'])} explorer(s)")
    print(f"-> {a.out}")
