"""Check a live explorer in a real Jupyter front end: start JupyterLab on localhost (with a token) in a temporary folder,
open a small notebook in headless Chromium (Debian's `chromium`, driven by Playwright as in scripts/check_site.py), run
its cell, which shows one live explorer (`static=False`: the kernel redraws on every change), move the slider with
the keyboard (ArrowRight on its focused handle), and check that the displayed image changes and that its bytes are
the pure function's PNG for the slider's new value, both as the kernel sees it (a second cell) and as this script computes
it. Also recorded: the browser's console errors and any request that leaves localhost.

Usage: python scripts/check_jupyter.py [--out results/site/jupyter_check.json] [--shots results/site/screenshots]
Needs: `pip install jupyterlab` in the environment that runs this script (it is not a dependency of ssl_learn: without it
the script says so and exits 0 without writing anything), Debian's `chromium` and `playwright` (the docs extra).
Exit status 1 if the check fails.
"""
import argparse, base64, hashlib, importlib.util, json, os, secrets, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

RENDER = 'temperature_frame'
VALUES = [0.05, 0.2, 1.0]
CELL_EXPLORER = f"""from ssl_learn.explore import explorer
from ssl_learn.losses import {RENDER}
ex = explorer({RENDER}, dict(T={VALUES}), static=False, title='live: InfoNCE temperature')
ex"""
CELL_KERNEL = f"""import hashlib, json
from ssl_learn.explore import to_png
T = ex.params()['T']
print('KERNEL' + json.dumps(dict(T=T, shown_sha=hashlib.sha256(ex.image.value).hexdigest(),
      pure_sha=hashlib.sha256(to_png({RENDER}(T)[0])).hexdigest(), frames_drawn=ex.n_frames())))"""

_IMG = "() => { const i = document.querySelector('.jp-OutputArea .widget-vbox img'); return i ? i.src : null; }"
_BYTES = """async () => { const i = document.querySelector('.jp-OutputArea .widget-vbox img');
  const b = new Uint8Array(await (await fetch(i.src)).arrayBuffer()); let s = '';
  for (let k = 0; k < b.length; k += 8192) s += String.fromCharCode(...b.subarray(k, k + 8192)); return btoa(s); }"""
_NUMBERS = "() => [...document.querySelectorAll('.jp-OutputArea .widget-vbox .widget-html-content')].map(e => e.innerText).join(' | ')"


def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def sha(b: bytes) -> str: return hashlib.sha256(b).hexdigest()


def run_cell(page, i):
    "Select cell `i` of the open notebook (command mode) and run it with Shift+Enter."
    page.locator('.jp-Notebook .jp-Cell').nth(i).locator('.jp-InputArea-editor').click()
    page.keyboard.press('Shift+Enter')


def check(out, shots, chromium=None, timeout=240):
    from playwright.sync_api import sync_playwright
    from check_site import find_chromium
    from ssl_learn.core import provenance
    from ssl_learn.explore import to_png
    from ssl_learn import losses
    import nbformat, jupyterlab, ipywidgets
    t0 = time.time(); tmp = Path(tempfile.mkdtemp(prefix='ssl_jupyter_'))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL_EXPLORER), nbformat.v4.new_code_cell(CELL_KERNEL)])
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    nbformat.write(nb, tmp/'live.ipynb')
    port, token = free_port(), secrets.token_hex(16)
    import jupyterlab_widgets                      # its prebuilt extension lives in the share/jupyter of the env it is in
    share = Path(jupyterlab_widgets.__file__).parents[4]/'share'/'jupyter'
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''), JUPYTER_CONFIG_DIR=str(tmp/'cfg'),
               JUPYTER_PATH=str(share) + os.pathsep + os.environ.get('JUPYTER_PATH', ''),
               JUPYTER_RUNTIME_DIR=str(tmp/'rt'), OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
    cmd = [sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--allow-root', '--ip=127.0.0.1', f'--port={port}',
           f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={tmp}', f'--LabApp.user_settings_dir={tmp/"settings"}',
           f'--LabApp.workspaces_dir={tmp/"ws"}', '--LabApp.news_url=', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    log = open(tmp/'server.log', 'w')
    srv = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f'http://127.0.0.1:{port}'
    res = dict(ok=False, jupyterlab=jupyterlab.__version__, ipywidgets=ipywidgets.__version__, kernel_python=sys.executable, render=f'ssl_learn.losses.{RENDER}', values=VALUES, steps=[])
    errors, external = [], []
    try:
        for _ in range(120):
            try: urllib.request.urlopen(f'{base}/api/status?token={token}', timeout=2); break
            except Exception: time.sleep(1)
        else: raise RuntimeError(f"JupyterLab did not answer on {base} in 120 s (log: {tmp/'server.log'})")
        res['steps'].append(f'server up after {time.time() - t0:.0f} s')
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium or find_chromium(), args=['--no-sandbox'])
            page = browser.new_context(viewport=dict(width=1280, height=900)).new_page()
            page.on('console', lambda m: errors.append(f'console {m.type}: {m.text}') if m.type == 'error' else None)
            page.on('pageerror', lambda e: errors.append(f'page error: {e}'))
            page.on('request', lambda r: external.append(r.url)
                    if urlparse(r.url).scheme not in ('data', 'blob', 'ws') and urlparse(r.url).netloc != f'127.0.0.1:{port}' else None)
            try:
                page.goto(f'{base}/lab/tree/live.ipynb?token={token}', wait_until='load')
                page.wait_for_selector('.jp-Notebook .jp-Cell .jp-InputArea-editor', timeout=timeout*1000)
                page.wait_for_function("() => document.querySelector('.jp-Notebook-ExecutionIndicator, .jp-Toolbar-kernelStatus') !== null",
                                       timeout=timeout*1000)
                page.wait_for_timeout(2000)
                run_cell(page, 0)
                page.wait_for_selector('.jp-OutputArea .widget-vbox .noUi-handle', timeout=timeout*1000)
                page.wait_for_function(f'() => ({_IMG})() !== null', timeout=timeout*1000)
                res['steps'].append(f'explorer shown after {time.time() - t0:.0f} s')
                before_src, before_png = page.evaluate(_IMG), base64.b64decode(page.evaluate(_BYTES))
                before_nums = page.evaluate(_NUMBERS)
                page.locator('.jp-OutputArea .widget-vbox .noUi-handle').first.focus()
                page.keyboard.press('ArrowRight')
                page.wait_for_function(f'src => ({_IMG})() !== src', arg=before_src, timeout=timeout*1000)
                page.wait_for_timeout(500)
                after_png, after_nums = base64.b64decode(page.evaluate(_BYTES)), page.evaluate(_NUMBERS)
                res['steps'].append(f'image changed after the key press, {time.time() - t0:.0f} s')
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.locator('.jp-OutputArea .widget-vbox').first.screenshot(path=str(Path(shots)/'jupyter_live_explorer.png'))
                page.screenshot(path=str(Path(shots)/'jupyter_lab.png'))
                run_cell(page, 1)
                page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output pre')].some(e => e.innerText.includes('KERNEL'))",
                                       timeout=timeout*1000)
                txt = next(t for t in page.eval_on_selector_all('.jp-OutputArea-output pre', 'els => els.map(e => e.innerText)') if 'KERNEL' in t)
                kernel = json.loads(txt[txt.index('KERNEL') + 6:].strip())
            except Exception:                          # what the page showed when it failed, for the report
                Path(shots).mkdir(parents=True, exist_ok=True); page.screenshot(path=str(Path(shots)/'jupyter_failure.png'))
                res['page_text_at_failure'] = page.evaluate("() => [...document.querySelectorAll('.jp-Cell')].map(e => e.innerText).join('\\n---\\n')")[-3000:]
                raise
            browser.close()
        expect = {T: sha(to_png(getattr(losses, RENDER)(T)[0])) for T in VALUES[:2]}
        res.update(before=dict(T=VALUES[0], png_sha=sha(before_png), numbers=before_nums),
                   after=dict(png_sha=sha(after_png), numbers=after_nums), kernel=kernel,
                   image_changed=sha(before_png) != sha(after_png),
                   before_is_pure=sha(before_png) == expect[VALUES[0]],
                   after_is_pure_for_next_value=sha(after_png) == expect[VALUES[1]],
                   kernel_value_moved=kernel['T'] == VALUES[1],
                   kernel_shows_what_page_shows=kernel['shown_sha'] == sha(after_png) == kernel['pure_sha'],
                   console_errors=errors, requests_leaving_localhost=external)
        res['ok'] = all(res[k] for k in ('image_changed', 'before_is_pure', 'after_is_pure_for_next_value', 'kernel_value_moved',
                                         'kernel_shows_what_page_shows')) and not external
    except Exception as e:
        res.update(error=f'{type(e).__name__}: {e}', console_errors=errors, requests_leaving_localhost=external,
                   server_log_tail=(tmp/'server.log').read_text()[-3000:])
    finally:
        srv.terminate()
        try: srv.wait(20)
        except subprocess.TimeoutExpired: srv.kill()
    res['seconds'] = round(time.time() - t0, 1)
    res['screenshots'] = [str(Path(shots).relative_to(ROOT)/n) if Path(shots).is_relative_to(ROOT) else str(Path(shots)/n)
                          for n in ('jupyter_live_explorer.png', 'jupyter_lab.png', 'jupyter_failure.png') if (Path(shots)/n).exists()]
    res.update(provenance())
    Path(out).parent.mkdir(parents=True, exist_ok=True); Path(out).write_text(json.dumps(res, indent=2) + '\n')
    return res


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT/'results'/'site'/'jupyter_check.json'))
    ap.add_argument('--shots', default=str(ROOT/'results'/'site'/'screenshots')); ap.add_argument('--chromium')
    a = ap.parse_args()
    if importlib.util.find_spec('jupyterlab') is None:
        print("check_jupyter: skipped, jupyterlab is not installed in this environment (it is not a dependency of ssl_learn); "
              "`pip install jupyterlab` to run this check."); sys.exit(0)
    r = check(a.out, a.shots, a.chromium)
    print(json.dumps({k: r.get(k) for k in ('ok', 'image_changed', 'after_is_pure_for_next_value', 'kernel_shows_what_page_shows',
                                            'console_errors', 'requests_leaving_localhost', 'error', 'steps', 'seconds')}, indent=1))
    print(f"-> {a.out}")
    sys.exit(0 if r['ok'] else 1)
