"""Check the built docs site in a real browser: serve it on localhost, drive headless Chromium (Debian's `chromium`)
with Playwright, and for every page assert that it loads without console errors or failed requests, that every
image has loaded (naturalWidth > 0), that every internal link resolves (HTTP 200, and its #anchor exists on the
target page), and that no request leaves localhost (no CDN: data: and blob: URLs are the browser's own).
Pages with interactive explorers (ipywidgets state in the page): every explorer's widgets render, and a key press on its
first control (ArrowRight on a slider, Space on the next toggle button) changes the frame it shows, without a kernel.
Screenshots of the front page, one method page and each explorer page's first explorer (after the key press) go to
results/site/screenshots/; the explorer results also go to <shots>/explorers.json.

Usage: python scripts/check_site.py [--site _site_offline] [--shots results/site/screenshots]    (`make docs-check`)
Needs: `apt-get install chromium` (scripts/setup.sh does it with DOCS=1 as root) and `pip install -e ".[docs]"`.
Exit status 1 if any page fails a check; a JSON report is written to <site>/check.json.
"""
import argparse, functools, http.server, json, shutil, sys, threading, time
from pathlib import Path
from urllib.parse import urljoin, urlparse, urldefrag

ROOT = Path(__file__).resolve().parents[1]


def find_chromium():
    for n in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
        p = shutil.which(n)
        if p: return p
    raise SystemExit("no chromium found: apt-get install -y chromium (Debian), or set --chromium")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


def serve(site: Path):
    h = functools.partial(_Quiet, directory=str(site))
    class _Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):   # the browser may close a connection early: not a site error
            if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)): super().handle_error(request, client_address)
    srv = _Server(('127.0.0.1', 0), h)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"


# the top-level explorer views of a page; for one of them: the visible frame, and a key press on its first control
_VIEWS = "() => [...document.querySelectorAll('.widget-vbox')].filter(e => !e.parentElement.closest('.widget-vbox'))"
_SHOWN = """i => { const v = (%s)()[i]; return [...v.querySelectorAll('img')].filter(e => e.offsetParent !== null)
                 .map(e => e.src + ':' + (e.complete && e.naturalWidth > 0)); }""" % _VIEWS
_FOCUS = """i => { const v = (%s)()[i]; const h = v.querySelector('.noUi-handle');
          if (h) { h.focus(); return 'ArrowRight'; }
          const b = [...v.querySelectorAll('.widget-toggle-button')].find(b => !b.classList.contains('mod-active'));
          if (b) { b.focus(); return 'Space'; } return null; }""" % _VIEWS


def check_explorers(page, rel, shots):
    "Every explorer of the page renders; a key press on its first control changes its visible frame."
    n_views = page.eval_on_selector_all('script[type="application/vnd.jupyter.widget-view+json"]', 'els => els.length')
    probs, res = [], []
    try: page.wait_for_function(f"() => ({_VIEWS})().length >= {n_views}", timeout=20000)
    except Exception: probs.append(f"explorers: {page.evaluate(f'({_VIEWS})().length')} of {n_views} widget views rendered")
    for i in range(page.evaluate(f'({_VIEWS})().length')):
        before = page.evaluate(_SHOWN, i)
        key = page.evaluate(_FOCUS, i)
        if key: page.keyboard.press(key); page.wait_for_timeout(400)
        after = page.evaluate(_SHOWN, i)
        ok = bool(key) and len(after) == 1 and after != before and after[0].endswith(':true')
        res.append(dict(view=i, key=key, frame_changed=after != before, frame_loaded=bool(after) and after[0].endswith(':true')))
        if not ok: probs.append(f"explorer {i}: key {key} on its first control did not show a new loaded frame ({before} -> {after})")
        if i == 0 and shots:
            page.evaluate(f"i => ({_VIEWS})()[i].scrollIntoView()", i)
            page.locator('.widget-vbox').first.screenshot(path=str(shots/f"explorer_{rel.removesuffix('.html')}.png"))
    return dict(widget_views=n_views, explorers=res), probs


def check(site, shots, chromium=None, method_page='methods.rotation.html'):
    from playwright.sync_api import sync_playwright
    site = Path(site); t0 = time.time()
    pages = sorted(str(p.relative_to(site)) for p in site.rglob('*.html') if not p.name.startswith(('genindex', 'search', 'py-modindex')))
    if not pages: raise SystemExit(f"no pages in {site}: build the site first (make docs)")
    srv, base = serve(site)
    report = dict(site=str(site), pages={}, n_pages=len(pages), n_links=0, n_images=0, n_anchors=0, failures=[], explorers={})
    Path(shots).mkdir(parents=True, exist_ok=True)
    anchors_of = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium or find_chromium(), args=['--no-sandbox'])
        ctx = browser.new_context(viewport=dict(width=1280, height=900))
        page = ctx.new_page()
        for rel in pages:
            errors, failed = [], []
            page.on('console', lambda m: errors.append(f"console {m.type}: {m.text} ({m.location.get('url', '')})") if m.type == 'error' else None)
            page.on('pageerror', lambda e: errors.append(f"page error: {e}"))
            page.on('requestfailed', lambda r: failed.append(f"request failed: {r.url} ({r.failure})"))
            page.on('response', lambda r: failed.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            page.on('request', lambda r: failed.append(f"request leaves localhost: {r.url}")
                    if urlparse(r.url).scheme not in ('data', 'blob') and urlparse(r.url).netloc != urlparse(base).netloc else None)
            resp = page.goto(base + rel, wait_until='load')
            page.wait_for_load_state('networkidle')
            widgets = None
            if page.eval_on_selector_all('script[type="application/vnd.jupyter.widget-state+json"]', 'els => els.length'):
                widgets, wprobs = check_explorers(page, rel, Path(shots))
                errors += wprobs; report['explorers'][rel] = widgets
            imgs = page.eval_on_selector_all('img', 'els => els.map(e => [e.currentSrc || e.src, e.complete && e.naturalWidth > 0])')
            links = page.eval_on_selector_all('a[href]', 'els => els.map(e => e.href)')
            anchors_of[rel] = set(page.eval_on_selector_all('[id]', 'els => els.map(e => e.id)'))
            bad_imgs = [s for s, ok in imgs if not ok]
            internal = sorted({l for l in links if urlparse(l).netloc == urlparse(base).netloc})
            report['pages'][rel] = dict(status=resp.status if resp else None, errors=errors + failed, images=len(imgs),
                                        bad_images=bad_imgs, internal_links=internal)
            report['n_images'] += len(imgs)
            page.close(); page = ctx.new_page()
        # every internal link: the target must answer 200, and an #anchor must exist on the target page
        import urllib.request
        status = {}
        for rel, r in report['pages'].items():
            for l in r['internal_links']:
                url, frag = urldefrag(l)
                if url not in status:
                    try: status[url] = urllib.request.urlopen(url).status
                    except Exception as e: status[url] = getattr(e, 'code', str(e))
                report['n_links'] += 1
                if status[url] != 200: r.setdefault('bad_links', []).append(f"{l} -> {status[url]}")
                elif frag:
                    target = urlparse(url).path.lstrip('/') or 'index.html'
                    if target.endswith('/'): target += 'index.html'
                    if target in anchors_of:
                        report['n_anchors'] += 1
                        if frag not in anchors_of[target]: r.setdefault('bad_links', []).append(f"{l} -> no #{frag} on {target}")
        # screenshots: the front page and one method page
        shots = Path(shots); shots.mkdir(parents=True, exist_ok=True)
        for rel, name in (('index.html', 'front_page.png'), (method_page, 'method_page.png')):
            if rel in report['pages']:
                p = ctx.new_page(); p.goto(base + rel, wait_until='networkidle'); p.screenshot(path=str(shots/name), full_page=False); p.close()
        browser.close()
    srv.shutdown()
    for rel, r in report['pages'].items():
        probs = r['errors'] + [f"image not loaded: {s}" for s in r['bad_images']] + r.get('bad_links', [])
        if r['status'] != 200: probs.insert(0, f"HTTP {r['status']}")
        if probs: report['failures'].append(dict(page=rel, problems=probs))
        r.pop('internal_links')
    b = site/'build.json'          # the build's own record: a notebook nbdev could not process lacks its API entries
    for n in (json.loads(b.read_text()).get('proc_failed', []) if b.exists() else []):
        report['failures'].append(dict(page=n, problems=['nbdev processing failed: the page fell back to the saved '
                                                         'notebook, without its generated API reference (build.json)']))
    report['seconds'] = round(time.time() - t0, 1)
    (site/'check.json').write_text(json.dumps(report, indent=2))
    (Path(shots)/'explorers.json').write_text(json.dumps(dict(site=str(site), pages=report['explorers'],
        failures=[f for f in report['failures'] if f['page'] in report['explorers']]), indent=2))
    print(f"{report['n_pages']} pages, {report['n_links']} internal links ({report['n_anchors']} with #anchors checked), "
          f"{report['n_images']} images checked in {report['seconds']:.0f} s; pages with problems: {len(report['failures'])}; "
          f"explorers: {sum(len(e['explorers']) for e in report['explorers'].values())} on {len(report['explorers'])} pages, "
          f"{sum(x['frame_changed'] for e in report['explorers'].values() for x in e['explorers'])} changed frame on a key press")
    for f in report['failures']:
        print(f"  {f['page']}:"); [print(f"    {p}") for p in f['problems'][:10]]
    return report


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--site', default=str(ROOT/'_site_offline')); ap.add_argument('--shots', default=str(ROOT/'results'/'site'/'screenshots'))
    ap.add_argument('--chromium'); ap.add_argument('--method-page', default='methods.rotation.html')
    a = ap.parse_args()
    r = check(a.site, a.shots, a.chromium, a.method_page)
    sys.exit(1 if r['failures'] else 0)
