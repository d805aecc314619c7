"""The docs site: tools/build_docs.py builds it from the notebooks, tools/check_docs.py checks it in headless Chromium.

The full build executes every notebook (cached by content in .docs_build/exec, shared with `make docs`), so a
cold run costs about as much as nbdev_test on 2 workers, plus Sphinx (~15 CPU-s) and Chromium (~1 CPU-s a page).
Measured with 17 notebooks on the shared 2-core machine: ~76 CPU-s in all (103 s wall at load 7).
The test fails when a notebook fails to execute (like nbdev_test), naming it with its traceback.
"""
import json, sys, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_docs, check_docs  # noqa: E402

CHROMIUM = check_docs.find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; "
                                                               ".ci/run installs it)")


def test_directives():
    d, src = build_docs.directives("#| export\n#|default_exp core\n#| eval: false\n\nx = 1\n#| not a directive")
    assert d == {"export": [], "default_exp": ["core"], "eval:": ["false"]}
    assert src == "x = 1\n#| not a directive"
    assert build_docs.directives("y = 2")[0] == {}


def _nb(*cells):
    def cell(kind, src, **kw):
        c = dict(cell_type=kind, metadata={}, source=src)
        if kind == "code": c.update(outputs=kw.get("outputs", []), execution_count=None)
        return c
    return dict(nbformat=4, nbformat_minor=5, metadata={}, cells=[cell(*c) if isinstance(c, tuple) else c for c in cells])


def test_page_transform(tmp_path):
    "nbdev semantics: directives stripped, hide dropped, export folded + autodoc, figures counted, API link added."
    png = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}}
    nb = _nb(("markdown", "# Core conventions\n> summary"), ("code", "#| default_exp core"),
             ("code", "#| hide\nsecret = 1"), ("code", "#| export\ndef img_to_grid(pts, stride): 'doc'\ndef _private(): pass"),
             dict(cell_type="code", metadata={}, source="plot()", outputs=[png], execution_count=1),
             ("code", "#| echo: false\nshown_output_only()"), ("code", "from nbdev import nbdev_export; nbdev_export()"))
    p = tmp_path / "00_core.ipynb"
    p.write_text(json.dumps(nb))
    page, figs = build_docs.page_notebook(p, p, {"core": "api/core"})
    srcs = [build_docs._src(c) for c in page["cells"]]
    assert figs == 1
    assert not any("secret" in s or "default_exp" in s or "nbdev_export" in s or "#|" in s for s in srcs), srcs
    assert "{doc}`api/core`" in srcs[1]
    exp = next(c for c in page["cells"] if build_docs._src(c).startswith("def img_to_grid"))
    assert "hide-input" in exp["metadata"]["tags"]
    autodoc = srcs[srcs.index(build_docs._src(exp)) + 1]
    assert ".. autofunction:: unsupervised_landmarks.core.img_to_grid" in autodoc and "_private" not in autodoc
    echo = next(c for c in page["cells"] if build_docs._src(c) == "shown_output_only()")
    assert "remove-input" in echo["metadata"]["tags"]


def test_discovery_order():
    nbs = build_docs.discover_notebooks()
    assert nbs[0].name == "index.ipynb"
    assert [p.name for p in nbs[1:]] == sorted(p.name for p in nbs[1:])
    assert "_modidx" not in build_docs.api_modules() and "core" in build_docs.api_modules()


@needs_chromium
def test_check_catches_broken_page(tmp_path):
    "The check must fail on a page with a missing image, a traceback and no heading (it can fail)."
    (tmp_path / "index.html").write_text(
        "<html><head><title>Home</title></head><body><h1>Home</h1>" + "<p>Landmarks from keypoints.</p>" * 20 +
        "<div style='background:#3060c0;height:120px'></div></body></html>")
    (tmp_path / "00_bad.html").write_text(
        "<html><head><title>Bad</title><script src='https://cdn.example.invalid/x.js'></script></head>"
        "<body><img src='_images/missing.png'>"
        "<pre>Traceback (most recent call last):\n  ValueError: boom</pre></body></html>")
    (tmp_path / "_manifest.json").write_text(json.dumps({"pages": [
        dict(kind="index", path="index.html", title="Home", figures=0),
        dict(kind="notebook", path="00_bad.html", title="Bad", figures=1)]}))
    res = {r.path: r for r in check_docs.check_site(tmp_path, tmp_path / "shots")}
    assert not res["index.html"].problems, res["index.html"].problems
    probs = " | ".join(res["00_bad.html"].problems)
    for expect in ["no <h1>", "image not loaded", "Traceback", "0 figure(s) rendered", "failed to load", "external"]:
        assert expect in probs, probs
    assert any("404" in p for p in res["(server)"].problems)


@needs_chromium
def test_docs_site_builds_and_renders(tmp_path):
    t0 = time.time()
    site = tmp_path / "site"
    m = build_docs.build(site, tmp_path / "work", workers=2, cache=ROOT / ".docs_build" / "exec", log=lambda *a: None)
    t_build = time.time() - t0
    pages = m["pages"]
    notebooks = build_docs.discover_notebooks()
    assert [p["source"] for p in pages if p["kind"] != "api"] == [f"nbs/{n.name}" for n in notebooks]
    assert {p["path"] for p in pages if p["kind"] == "api"} == {f"api/{mod}.html" for mod in build_docs.api_modules()}
    assert not m["failed_notebooks"]
    assert not [w for w in m["warnings"] if "autodoc" in w or "failed to import" in w], m["warnings"]
    results = check_docs.check_site(site, tmp_path / "shots", all_api=False)  # index, notebooks, one API page
    report = check_docs.report(results)
    print(report, f"\nbuild {t_build:.1f}s (execution {m['seconds']['execute']}s), check {time.time() - t0 - t_build:.1f}s")
    assert not any(r.problems for r in results), report
    by_path = {r.path: r for r in results}
    for p in pages:
        if p["kind"] != "api": assert by_path[p["path"]].screenshot, p  # index + every notebook screenshotted
    assert sum(r.images for r in results) >= sum(p["figures"] for p in pages)
    assert [r for r in results if r.kind == "api"], "no API page was opened"
    # every API page documents its module's public functions/classes with signatures and docstrings
    for mod in build_docs.api_modules():
        public = build_docs.module_defs(mod)
        page = (site / "api" / f"{mod}.html").read_text()
        assert f"<title>{mod} " in page, mod
        missing = [n for n in public if f'id="unsupervised_landmarks.{mod}.{n}"' not in page]
        assert not missing, f"api/{mod}.html lacks {missing}"
    assert "sig-param" in (site / "api" / "core.html").read_text()
