"""Check the built docs site in headless Chromium (`make docs` builds it; tests/test_docs.py runs both).

    python tools/check_docs.py [site] [--screenshots DIR] [--first-api-only]

Serves the site on localhost (http.server in a thread), opens the index, every notebook page and the API
pages in headless Chromium (`--dump-dom` after load, `--screenshot`) and asserts that each page rendered:
the expected title and a heading are there, no error text (Python tracebacks, Sphinx/docutils error
boxes, failed autodoc imports), no request for a local file failed (server log, plus a probe script the
test server injects into HTML responses that records failed resource loads and JavaScript errors), every
<img> loaded with a non-zero natural size, each notebook page shows at least as many figures as its
executed notebook produced (site/_manifest.json, written by tools/build_docs.py), and the screenshot is
not blank. Exits 1 and lists the problems when a page fails.
"""
from __future__ import annotations

import argparse, functools, html, http.server, io, json, os, re, shutil, subprocess, sys, tempfile, threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
                  "--hide-scrollbars", "--disable-dev-shm-usage"]
# Text that must never appear on a rendered page.
ERROR_PATTERNS = [r"Traceback \(most recent call last\)", r"autodoc: failed to import",
                  r"Unknown directive type", r"Exception encountered at", r"\bsystem-message\b", r"404 Not Found",
                  r"(?m)\.\. (py:\w+|auto\w+|code-block)::"]  # reStructuredText shown as text, not rendered
# Injected by the test server at the top of <head>: records failed resource loads and JS errors, and after
# `load` writes each image's natural size into the DOM, which --dump-dom then shows.
PROBE = """<script>(function(){var d=document.documentElement;
function add(a,v){d.setAttribute(a,(d.getAttribute(a)||'')+' '+v);}
window.addEventListener('error',function(e){var t=e.target;
 if(t&&t!==window&&(t.src||t.href))add('data-probe-failed',t.src||t.href);else add('data-probe-jserror',e.message);},true);
window.addEventListener('load',function(){var im=document.images;for(var i=0;i<im.length;i++)
 im[i].setAttribute('data-probe-size',(im[i].complete?im[i].naturalWidth+'x'+im[i].naturalHeight:'incomplete'));
 d.setAttribute('data-probe-loaded','1');});})();</script>"""


def find_chromium() -> str | None:
    for name in [os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome", "chrome"]:
        if name and shutil.which(name): return shutil.which(name)
    return None


class _Handler(http.server.SimpleHTTPRequestHandler):
    log: list = []

    def log_message(self, fmt, *args): pass

    def send_head(self):
        path = self.translate_path(self.path)
        if os.path.isdir(path): path = os.path.join(path, "index.html")
        if path.endswith(".html") and os.path.isfile(path):  # inject the probe, serve from memory
            body = Path(path).read_bytes().replace(b"<head>", b"<head>" + PROBE.encode(), 1)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.log.append((self.path, 200))
            return io.BytesIO(body)
        f = super().send_head()
        self.log.append((self.path, 200 if f else 404))
        return f


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # chromium drops connections it no longer needs
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class Server:
    "http.server serving `root` on 127.0.0.1 in a daemon thread; `.requests` is the (path, status) log."

    def __init__(self, root: Path):
        handler = type("H", (_Handler,), {"log": []})
        self.httpd = _QuietServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
        self.requests = handler.log
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown(); self.httpd.server_close()

    def __enter__(self): return self

    def __exit__(self, *a): self.close()


class _Dom(HTMLParser):
    "What the check needs from a dumped DOM."

    def __init__(self):
        super().__init__()
        self.title, self.h1, self.imgs, self.root_attrs, self.text, self.assets = "", [], [], {}, [], []
        self._in, self._skip, self._svg = None, 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html": self.root_attrs = a
        if tag == "title" and not self.title and not self._svg: self._in = tag  # not the <title>s inside SVG icons
        if tag == "h1": self._in = tag; self.h1.append("")
        if tag == "svg": self._svg += 1
        if tag in ("script", "style"): self._skip += 1
        if tag == "img": self.imgs.append(a)
        if tag == "script" and a.get("src"): self.assets.append(a["src"])
        if tag == "link" and "stylesheet" in (a.get("rel") or "") and a.get("href"): self.assets.append(a["href"])

    def handle_endtag(self, tag):
        if tag in ("title", "h1"): self._in = None
        if tag == "svg": self._svg = max(0, self._svg - 1)
        if tag in ("script", "style"): self._skip = max(0, self._skip - 1)

    def handle_data(self, data):
        if self._in == "title": self.title += data
        elif self._in == "h1": self.h1[-1] += data
        if not self._skip: self.text.append(data)


@dataclass
class PageResult:
    path: str
    kind: str
    title: str = ""
    images: int = 0
    figures: int = 0
    screenshot: str | None = None
    problems: list = field(default_factory=list)


def _chromium(binary: str, args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-") as prof:
        return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={prof}", *args], capture_output=True,
                              text=True, timeout=timeout)


def screenshot_stats(png: Path) -> tuple[int, float]:
    "(number of distinct colours, fraction of pixels that differ from the most common colour)."
    import numpy as np
    from PIL import Image
    a = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3).astype(np.int32)
    counts = np.bincount((a[:, 0] << 16) | (a[:, 1] << 8) | a[:, 2])
    return int((counts > 0).sum()), 1.0 - counts.max() / counts.sum()


def check_page(binary: str, base: str, page: dict, shots: Path | None) -> PageResult:
    "Open one page (one Chromium run: --dump-dom after load, and --screenshot when `shots`) and check it."
    r = PageResult(page["path"], page["kind"], figures=page.get("figures", 0))
    url = base + page["path"]
    png = shots / (page["path"].replace("/", "__").removesuffix(".html") + ".png") if shots is not None else None
    args = ["--virtual-time-budget=5000", "--window-size=1280,1600"] + ([f"--screenshot={png}"] if png else [])
    try:
        p = _chromium(binary, [*args, "--dump-dom", url])
    except subprocess.TimeoutExpired:
        r.problems.append("chromium timed out"); return r
    if p.returncode or "<html" not in p.stdout:
        r.problems.append(f"chromium --dump-dom failed ({p.returncode}): {p.stderr[-500:]}"); return r
    dom = _Dom(); dom.feed(p.stdout)
    r.title = " ".join(dom.title.split())
    want = page.get("title", "")
    if not r.title: r.problems.append("no <title>")
    elif want and html.unescape(want).strip("`") not in r.title.replace("`", ""):
        r.problems.append(f"title {r.title!r} does not contain {want!r}")
    if not any(h.strip() for h in dom.h1): r.problems.append("no <h1> heading")
    if dom.root_attrs.get("data-probe-loaded") != "1": r.problems.append("page did not finish loading")
    if dom.root_attrs.get("data-probe-failed"):
        r.problems.append(f"failed to load: {dom.root_attrs['data-probe-failed'].split()}")
    if dom.root_attrs.get("data-probe-jserror"):
        r.problems.append(f"JavaScript error: {dom.root_attrs['data-probe-jserror']}")
    external = [a for a in dom.assets + [i.get("src", "") for i in dom.imgs] if re.match(r"(https?:)?//", a)]
    if external: r.problems.append(f"loads external resources (the site must work offline): {external[:3]}")
    text = " ".join(" ".join(dom.text).split())
    for pat in ERROR_PATTERNS:
        m = re.search(pat, p.stdout if "system-message" in pat else text)
        if m: r.problems.append(f"error text on page: {m.group(0)[:120]!r}")
    for img in dom.imgs:
        size, src = img.get("data-probe-size", "missing"), img.get("src", "")
        if not (re.fullmatch(r"\d+x\d+", size) and all(int(v) > 0 for v in size.split("x"))):
            r.problems.append(f"image not loaded: {src[:80]} ({size})")
        elif src.startswith("data:") or "_images/" in src:  # a figure from a notebook output (not a theme icon)
            r.images += 1
    if r.images < r.figures: r.problems.append(f"{r.images} figure(s) rendered, the executed notebook has {r.figures}")
    if png is not None:
        if not png.exists(): r.problems.append(f"no screenshot: {p.stderr[-300:]}")
        else:
            n_col, ink = screenshot_stats(png)
            r.screenshot = str(png)
            if n_col < 8 or ink < 0.002: r.problems.append(f"blank screenshot ({n_col} colours, {ink:.1%} ink)")
    return r


def load_manifest(site: Path) -> list[dict]:
    m = site / "_manifest.json"
    if m.exists(): return json.loads(m.read_text())["pages"]
    pages = [dict(kind="index", path="index.html", title="")]
    pages += [dict(kind="notebook", path=p.name, title="") for p in sorted(site.glob("[0-9]*.html"))]
    pages += [dict(kind="api", path=f"api/{p.name}", title="") for p in sorted((site / "api").glob("*.html"))]
    return pages


def check_site(site: Path, shots: Path | None = None, all_api: bool = True, workers: int = 2) -> list[PageResult]:
    "Check the index, every notebook page and the API pages (all, or the first); screenshots of all but extra API pages."
    binary = find_chromium()
    if not binary: raise FileNotFoundError("chromium is not installed (apt-get install -y chromium)")
    site = Path(site)
    if not (site / "index.html").exists(): raise FileNotFoundError(f"{site / 'index.html'} not found: run `make docs`")
    pages = load_manifest(site)
    api = [p for p in pages if p["kind"] == "api"]
    todo = [p for p in pages if p["kind"] != "api"] + (api if all_api else api[:1])
    own_shots = shots is None
    shots = Path(tempfile.mkdtemp(prefix="docs-shots-")) if own_shots else Path(shots)
    shots.mkdir(parents=True, exist_ok=True)
    first_api = api[0]["path"] if api else None
    try:
        with Server(site) as srv, ThreadPoolExecutor(workers) as ex:
            results = list(ex.map(lambda p: check_page(binary, srv.url, p, shots if p["kind"] != "api"
                                                       or p["path"] == first_api else None), todo))
            missing = sorted({path for path, st in srv.requests if st == 404 and path != "/favicon.ico"})
        if missing:
            results.append(PageResult("(server)", "server", problems=[f"404 for {m}" for m in missing]))
    finally:
        if own_shots: shutil.rmtree(shots, ignore_errors=True)
    return results


def report(results: list[PageResult]) -> str:
    lines = []
    for r in results:
        status = "ok  " if not r.problems else "FAIL"
        lines.append(f"{status} {r.kind:<8} {r.path:<32} imgs={r.images:<3} figs={r.figures:<3} {r.title[:60]}")
        lines += [f"       - {p}" for p in r.problems]
    pages = [r for r in results if r.kind != "server"]
    nbs = [r for r in pages if r.kind == "notebook"]
    lines.append(f"{sum(not r.problems for r in pages)}/{len(pages)} pages ok ({len(nbs)} notebooks, "
                 f"{sum(r.kind == 'api' for r in pages)} API pages), {sum(r.images for r in pages)} images loaded, "
                 f"{sum(r.figures for r in pages)} figures expected, {sum(bool(r.screenshot) for r in pages)} screenshots")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("site", nargs="?", default=str(ROOT / "site"))
    ap.add_argument("--screenshots", default=None, help="keep the screenshots in this directory")
    ap.add_argument("--first-api-only", action="store_true", help="open only the first API page")
    a = ap.parse_args(argv)
    try:
        results = check_site(Path(a.site), Path(a.screenshots) if a.screenshots else None, not a.first_api_only)
    except FileNotFoundError as e:
        print(f"check_docs: {e}", file=sys.stderr); return 2
    print(report(results))
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
