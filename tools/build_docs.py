"""Build the documentation site from the notebooks, offline, in one command (`make docs`).

    python tools/build_docs.py [--out site] [--work .docs_build] [--workers 2] [--no-cache] [--strict]
                               [--allow-errors] [--exclude GLOB]

Quarto (which `nbdev_docs` needs) cannot be installed offline, so the site is built with Sphinx + MyST-NB
(furo theme; settings in tools/docs/conf.py). `nbdev_docs` keeps working for users who have Quarto
(nbs/_quarto.yml, nbs/nbdev.yml, nbs/sidebar.yml).

Steps:
1. Discover nbs/*.ipynb (index first, then file-name order; `_*` notebooks skipped). Notebooks whose name does not
   start with a digit (nbs/findings.ipynb: markdown only, no module) are pages listed before the chapters.
2. Execute each notebook (notebooks are committed without outputs). By default a notebook runs exactly as
   `nbdev_test` runs it: in-process with execnb, from nbs/, with IN_TEST=1, skipping the cells flagged with
   settings.ini `tst_flags` (e.g. `#| notest`). `EXECUTION` below overrides that per notebook: parameterised
   experiment notebooks run through papermill with small parameters, or a committed executed copy is shown.
   Results are cached in <work>/exec keyed by the notebook, the package sources and the execution spec, and
   notebooks run on `--workers` processes.
3. Turn each executed notebook into a page the way nbdev_docs would: directive lines (`#| ...`) are removed,
   `#| hide` cells dropped, `#| export` cells' source folded behind a toggle and followed by the rendered
   signature and docstring of each public function/class they define (nbdev's `show_doc`).
4. Write one API page per exported module (unsupervised_landmarks/*.py except `_*`) with autodoc.
5. sphinx-build into --out, plus `_manifest.json` (pages, titles, expected figure counts) for tools/check_docs.py.
"""
from __future__ import annotations

import argparse, ast, configparser, fnmatch, hashlib, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, PKG, CONF_DIR = ROOT / "nbs", ROOT / "unsupervised_landmarks", ROOT / "tools" / "docs"
LIB = "unsupervised_landmarks"
BUILDER_VERSION = "1"  # bump to invalidate every cached executed notebook

# Per-notebook execution overrides (file name -> spec). Entries for notebooks that do not exist are ignored.
#   {"papermill": {param: value}}  run with papermill and these parameters (cwd nbs/); a `run_dir` parameter
#                                  declared by the notebook is pointed at a scratch directory under <work>.
#   {"executed": "path/in/repo.ipynb"}  render this committed executed copy; nothing is run. Keep such copies
#                                  outside nbs/ (nbdev and tests/test_project.py treat nbs/**.ipynb as sources).
#   {"skip": True}                 render the notebook without outputs.
EXECUTION: dict[str, dict] = {
    "10_train.ipynb": {"papermill": {"preset": "test"}},
}

_DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(.*?)\s*$")


def directives(source: str) -> tuple[dict[str, list[str]], str]:
    "nbdev cell directives (`#| name args` lines at the top of a cell) and the source without them."
    lines, out = source.split("\n"), {}
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if m:
            text = m.group(1)
            if re.match(r"^[\w-]+:", text): name, rest = text.split(":", 1); name += ":"  # `#| eval: false`
            else: name, _, rest = text.partition(" ")  # `#| export`, `#| default_exp core`
            out[name.lower()] = rest.split()
        elif lines[i].strip():
            break
        i += 1
    return out, "\n".join(lines[i:]).strip("\n")


def settings() -> configparser.SectionProxy:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(ROOT / "settings.ini")
    return cp["DEFAULT"]


def discover_notebooks(nbs: Path = NBS, exclude: list[str] = ()) -> list[Path]:
    "nbs/*.ipynb: index first, then by file name (which is notebook order); `exclude`: file-name globs."
    found = [p for p in nbs.glob("*.ipynb") if not p.name.startswith(("_", "."))
             and not any(fnmatch.fnmatch(p.name, pat) for pat in exclude)]
    return sorted(found, key=lambda p: (p.stem != "index", p.name))


def module_of(nb: dict) -> str | None:
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            d, _ = directives(_src(c))
            if "default_exp" in d and d["default_exp"]: return d["default_exp"][0]
    return None


def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


# ---------------------------------------------------------------------------------------------------- execution
def _package_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(PKG.rglob("*.py")):
        if "__pycache__" in p.parts: continue
        h.update(str(p.relative_to(PKG)).encode()); h.update(p.read_bytes())
    return h.hexdigest()


def _worker_init(threads: int):
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"): os.environ.setdefault(k, str(threads))
    os.environ["IN_TEST"] = "1"  # notebooks run as under nbdev_test (which sets it)
    os.environ.setdefault("MPLBACKEND", "Agg")


def _exec_job(job: dict) -> dict:
    "Run in a worker process: execute one notebook into job['dest']. Returns timing and status."
    t0 = time.time()
    src, dest = Path(job["src"]), Path(job["dest"])
    tmp = dest.with_suffix(".part.ipynb")
    try:
        if job["mode"] == "papermill":
            import papermill as pm
            params = dict(job["params"])
            declared = pm.inspect_notebook(str(src))
            if "run_dir" in declared and "run_dir" not in params:  # a fresh run every time, never a resumed one
                params["run_dir"] = str(Path(job["scratch"]) / src.stem)
                shutil.rmtree(params["run_dir"], ignore_errors=True)
            try:
                pm.execute_notebook(str(src), str(tmp), parameters=params, cwd=str(src.parent), progress_bar=False)
            except Exception as e:  # PapermillExecutionError; the partial notebook (with the error) is in tmp
                if job["allow_errors"] and tmp.exists(): os.replace(tmp, dest)
                return dict(name=src.name, ok=False, seconds=time.time() - t0, error=f"{type(e).__name__}: {e}")
        else:
            from execnb.shell import CaptureShell
            from execnb.nbio import read_nb, write_nb
            flags = set(job["skip_flags"])

            def skip(cell):
                if cell.cell_type != "code": return True
                d, _ = directives(cell.source)
                if d.get("eval:", [""])[0].lower() == "false": return True
                return bool(flags & set(d))

            main_mod = sys.modules["__main__"]  # IPython swaps in its own __main__; the worker needs the real one back
            shell, cwd, nb = CaptureShell(src), os.getcwd(), read_nb(src)
            shell._fname = src
            os.chdir(src.parent)
            try:
                shell.run_all(nb, exc_stop=True, preproc=skip)
            except Exception:
                if job["allow_errors"]: write_nb(nb, dest)  # rendered up to the failing cell, error shown
                return dict(name=src.name, ok=False, seconds=time.time() - t0, error=shell.prettytb(fname=src))
            finally:
                os.chdir(cwd); sys.modules["__main__"] = main_mod
            write_nb(nb, tmp)
        os.replace(tmp, dest)
        return dict(name=src.name, ok=True, seconds=time.time() - t0)
    except Exception as e:
        return dict(name=src.name, ok=False, seconds=time.time() - t0, error=f"{type(e).__name__}: {e}")


def execute_all(notebooks: list[Path], cache: Path, workers: int, use_cache: bool, allow_errors: bool = False,
                log=print) -> tuple[dict[str, Path], list[dict]]:
    """Executed copy of every notebook (from the cache when the key matches) and the failures.
    Raises on a failure unless `allow_errors` (then the page shows the notebook up to the error; not cached)."""
    cache.mkdir(parents=True, exist_ok=True)
    flags = settings().get("tst_flags", "notest").split()
    pkg = _package_digest()
    out, jobs = {}, []
    for nb in notebooks:
        spec = EXECUTION.get(nb.name, {})
        if "executed" in spec:
            out[nb.name] = ROOT / spec["executed"]
            if not out[nb.name].exists(): raise FileNotFoundError(f"{nb.name}: executed copy {out[nb.name]} is missing")
            continue
        if spec.get("skip"):
            out[nb.name] = nb
            continue
        key = hashlib.sha256(b"\0".join([nb.read_bytes(), pkg.encode(), json.dumps(spec, sort_keys=True).encode(),
                                          " ".join(flags).encode(), BUILDER_VERSION.encode()])).hexdigest()[:16]
        dest = cache / f"{nb.stem}.{key}.ipynb"
        out[nb.name] = dest
        if use_cache and dest.exists(): continue
        mode = "papermill" if "papermill" in spec else "execnb"
        jobs.append(dict(src=str(nb), dest=str(dest), mode=mode, params=spec.get("papermill", {}),
                         skip_flags=flags, scratch=str(cache / "scratch"), allow_errors=allow_errors))
    log(f"executing {len(jobs)} notebook(s) on {min(workers, len(jobs)) if jobs else 0} worker(s); "
        f"{len(notebooks) - len(jobs)} from cache/copies")
    failures = []
    if jobs:
        import multiprocessing as mp
        n = max(1, min(workers, len(jobs)))
        # Workers are reused across notebooks like nbdev_test's (each notebook still gets a fresh shell and
        # namespace): a new process per notebook costs ~2 s of imports. Threads are split between workers.
        with ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                 initargs=(max(1, (os.cpu_count() or 1) // n),)) as ex:
            for r in ex.map(_exec_job, jobs):
                log(f"  {r['name']:<28} {'ok' if r['ok'] else 'FAILED'} {r['seconds']:.1f}s")
                if not r["ok"]: failures.append(r)
    current, stems = {Path(p) for p in out.values()}, {nb.stem for nb in notebooks}
    for stale in [*cache.glob("*.ipynb"), *cache.glob("*.failed")]:  # one cached copy per notebook
        if stale not in current and stale.name.split(".")[0] in stems and ".part." not in stale.name:
            stale.unlink(missing_ok=True)
    for f in failures:
        if allow_errors and Path(out[f["name"]]).exists():  # shown once, never served from the cache
            failed = Path(out[f["name"]]); out[f["name"]] = failed.rename(failed.with_suffix(".failed"))
        elif allow_errors: out[f["name"]] = NBS / f["name"]
    if failures and not allow_errors:
        raise RuntimeError("notebook execution failed:\n" + "\n".join(f["name"] + ":\n" + f["error"] for f in failures))
    return out, failures


# ---------------------------------------------------------------------------------------------------- pages
def _public_defs(code: str, module: str, public: set[str]) -> list[str]:
    "autodoc directives for the public functions/classes an exported cell defines (nbdev's show_doc)."
    try: tree = ast.parse(code)
    except SyntaxError: return []
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in public:
            kind = "autoclass" if isinstance(node, ast.ClassDef) else "autofunction"
            opts = "   :no-index:\n" + ("   :members:\n" if kind == "autoclass" else "")
            out.append(f".. {kind}:: {LIB}.{module}.{node.name}\n{opts}")
    # autodoc emits reStructuredText, so it must run inside eval-rst (MyST would show it as text)
    return ["```{eval-rst}\n" + "\n".join(out) + "```"] if out else []


def _module_all(module: str) -> set[str]:
    p = PKG / f"{module.replace('.', '/')}.py"
    if not p.exists(): return set()
    for node in ast.parse(p.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            try: return set(ast.literal_eval(node.value))
            except ValueError: return set()
    return set()


def module_defs(module: str) -> list[str]:
    "Public (in `__all__`) functions and classes defined at the top level of a package module."
    public, tree = _module_all(module), ast.parse((PKG / f"{module}.py").read_text())
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and n.name in public]


def _image_outputs(cell) -> int:
    return sum(1 for o in cell.get("outputs", []) if o.get("output_type") in ("display_data", "execute_result")
               and any(k.startswith("image/") for k in o.get("data", {})))


def page_notebook(executed: Path, source: Path, api_pages: dict[str, str]) -> tuple[dict, int]:
    "The executed notebook turned into a docs page; returns (notebook json, number of figures shown)."
    nb = json.loads(executed.read_text())
    module = module_of(json.loads(source.read_text()))
    public = _module_all(module) if module else set()
    cells, n_img = [], 0
    for i, c in enumerate(nb["cells"]):
        c.setdefault("metadata", {})
        tags = list(c["metadata"].get("tags", []))
        if c["cell_type"] != "code":
            src = _src(c)
            if c["cell_type"] == "raw": continue
            if "#| hide" in src: continue
            cells.append(c)
            if i == 0 and module and module in api_pages:
                cells.append(_md(f"Exports `{LIB}.{module}`; API reference: {{doc}}`{api_pages[module]}`."))
            continue
        d, src = directives(_src(c))
        if "hide" in d or "default_exp" in d and not src or "nbdev_export(" in src: continue
        if not src and not c.get("outputs"): continue
        c["source"] = src
        if "injected-parameters" in tags: tags.append("remove-cell")  # papermill's: scratch paths, not content
        exported = any(k in d for k in ("export", "exporti"))
        if exported: tags.append("hide-input")
        if d.get("echo:", [""])[0].lower() == "false": tags.append("remove-input")
        if d.get("output:", [""])[0].lower() == "false": tags.append("remove-output")
        else: n_img += _image_outputs(c)
        if tags: c["metadata"]["tags"] = sorted(set(tags))
        cells.append(c)
        if ("export" in d or "exports" in d) and module:
            docs = _public_defs(src, module, public)
            if docs: cells.append(_md("\n\n".join(docs)))
    nb["cells"] = cells
    nb.setdefault("metadata", {})["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb, n_img


def _md(source: str) -> dict:
    return dict(cell_type="markdown", id=hashlib.sha1(source.encode()).hexdigest()[:8], metadata={}, source=source)


def _finish(nb: dict) -> dict:
    """MyST-NB numbers cell lines from (index+1)*10000 unless given a source map, and parses eval-rst blocks
    (autodoc) after that many padding lines: a map of the real line counts makes the build ~10x faster."""
    starts, line = [], 0
    for i, c in enumerate(nb["cells"]):
        starts.append(line); line += _src(c).count("\n") + 2
        c.setdefault("id", f"c{i:04d}")  # nbdev_clean strips cell ids; nbformat 4.5 wants them
    nb["metadata"]["source_map"] = starts
    nb["nbformat"], nb["nbformat_minor"] = 4, max(5, nb.get("nbformat_minor", 5))
    return nb


def api_modules() -> list[str]:
    return sorted(p.stem for p in PKG.glob("*.py") if not p.stem.startswith("_"))


def _source_notebook(module: str) -> str | None:
    m = re.search(r"File to edit: \.\./nbs/(\S+?\.ipynb)", (PKG / f"{module}.py").read_text()[:600])
    return m.group(1) if m else None


def page_api(module: str, notebooks: set[str]) -> str:
    nb = _source_notebook(module)
    intro = f"API reference of the module `{LIB}.{module}`"
    intro += f", exported from the notebook {{doc}}`../{Path(nb).stem}`." if nb and nb in notebooks else "."
    lines = [f"# {module}", "", intro, "", "```{eval-rst}", f".. automodule:: {LIB}.{module}", "   :members:",
             "   :undoc-members:", "   :show-inheritance:", "```", ""]
    return "\n".join(lines)


def _write(path: Path, text: str):
    "Write only when the content changed (keeps Sphinx's incremental rebuild working)."
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text: path.write_text(text)


def stage(notebooks: list[Path], executed: dict[str, Path], src: Path) -> list[dict]:
    "Write the Sphinx source tree into `src`; returns the manifest's page list."
    mods = api_modules()
    api_pages = {m: f"api/{m}" for m in mods}
    pages, keep = [], set()
    names = {nb.name for nb in notebooks}
    for nb in notebooks:
        page, n_img = page_notebook(executed[nb.name], nb, api_pages)
        if nb.stem == "index":
            # pages that are not numbered chapters (nbs/findings.ipynb) come first, under their own caption
            pages_ = [n.stem for n in notebooks if n.stem != "index" and not n.stem[:1].isdigit()]
            toc = (["```{toctree}", ":hidden:", ":caption: Findings", ""] + pages_ + ["```", ""] if pages_ else []) + \
                  ["```{toctree}", ":hidden:", ":caption: Notebooks", ""] + \
                  [n.stem for n in notebooks if n.stem != "index" and n.stem not in pages_] + ["```", "",
                   "```{toctree}", ":hidden:", ":caption: API reference", ""] + [api_pages[m] for m in mods] + ["```"]
            page["cells"].append(_md("\n".join(toc)))
        title = next((l[2:].strip() for c in page["cells"] if c["cell_type"] == "markdown"
                      for l in _src(c).split("\n") if l.startswith("# ")), nb.stem)
        _write(src / nb.name, json.dumps(_finish(page), indent=1))
        keep.add(nb.name)
        pages.append(dict(kind="index" if nb.stem == "index" else "notebook", path=f"{nb.stem}.html",
                          title=title, source=f"nbs/{nb.name}", figures=n_img))
    for m in mods:
        _write(src / "api" / f"{m}.md", page_api(m, names))
        keep.add(f"api/{m}.md")
        pages.append(dict(kind="api", path=f"api/{m}.html", title=m, source=f"{LIB}/{m}.py", figures=0))
    for p in list(src.rglob("*.ipynb")) + list(src.rglob("*.md")):  # notebooks/modules that were removed
        if str(p.relative_to(src)) not in keep: p.unlink()
    return pages


# ---------------------------------------------------------------------------------------------------- build
def build(out: Path = ROOT / "site", work: Path = ROOT / ".docs_build", workers: int = 2, use_cache: bool = True,
          cache: Path | None = None, strict: bool = False, allow_errors: bool = False, exclude: list[str] = (),
          log=print) -> dict:
    t0 = time.time()
    out, work = Path(out).resolve(), Path(work).resolve()
    notebooks = discover_notebooks(exclude=exclude)
    if not any(n.stem == "index" for n in notebooks): raise FileNotFoundError(f"{NBS / 'index.ipynb'} is missing")
    executed, failures = execute_all(notebooks, Path(cache) if cache else work / "exec", workers, use_cache,
                                     allow_errors, log)
    t_exec = time.time() - t0
    src = work / "src"
    pages = stage(notebooks, executed, src)
    # notebooks link figures of the results registry as ../results/... (relative to nbs/): mirror it beside src/
    if (ROOT / "results").is_dir():
        shutil.rmtree(work / "results", ignore_errors=True)
        shutil.copytree(ROOT / "results", work / "results", ignore=shutil.ignore_patterns("*.jsonl", "*.json", "*.sh"))
    # serial: `-j 2` costs ~40% more CPU (each reader process imports the package for autodoc) and was not faster
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-c", str(CONF_DIR), "-d", str(work / "doctrees"),
           str(src), str(work / "html")]  # MyST-NB writes to <outdir>/../jupyter_execute
    if strict: cmd[3:3] = ["-W", "--keep-going"]  # right after `-m sphinx`
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    warnings = [l for l in (r.stderr or "").splitlines() if "WARNING" in l or "ERROR" in l]
    if r.returncode:
        raise RuntimeError(f"sphinx-build failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}")
    if out.exists(): shutil.rmtree(out)
    shutil.copytree(work / "html", out, ignore=shutil.ignore_patterns(".buildinfo", ".doctrees"))
    manifest = dict(generator="sphinx+myst-nb", pages=pages, warnings=warnings,
                    failed_notebooks=[f["name"] for f in failures],
                    seconds=dict(execute=round(t_exec, 1), total=round(time.time() - t0, 1)))
    (out / "_manifest.json").write_text(json.dumps(manifest, indent=1))
    (out / ".nojekyll").touch()
    for w in warnings: log(w)
    log(f"built {len(pages)} pages into {out} in {time.time() - t0:.1f}s (execution {t_exec:.1f}s, "
        f"{len(warnings)} warning(s)); open {out / 'index.html'}")
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "site"), help="output directory (default: site/)")
    ap.add_argument("--work", default=str(ROOT / ".docs_build"), help="staging, doctrees and execution cache")
    ap.add_argument("--cache", default=None, help="executed-notebook cache directory (default: <work>/exec)")
    ap.add_argument("--workers", type=int, default=int(os.environ.get("NB_WORKERS", 2)))
    ap.add_argument("--no-cache", action="store_true", help="re-execute every notebook")
    ap.add_argument("--strict", action="store_true", help="turn Sphinx warnings into errors")
    ap.add_argument("--allow-errors", action="store_true",
                    help="build even if a notebook fails (its page shows the error); exit status 1 all the same")
    ap.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                    help="leave out notebooks whose file name matches (repeatable), e.g. --exclude '2*.ipynb'")
    a = ap.parse_args(argv)
    # run the imported module, not __main__, so worker processes unpickle `build_docs._exec_job` by name
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import build_docs
    try:
        m = build_docs.build(Path(a.out), Path(a.work), a.workers, not a.no_cache, Path(a.cache) if a.cache else None, a.strict,
                  a.allow_errors, a.exclude)
        if m["failed_notebooks"]:
            print(f"docs built, but these notebooks failed: {m['failed_notebooks']}", file=sys.stderr)
            return 1
    except (RuntimeError, FileNotFoundError) as e:
        print(f"docs build failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
