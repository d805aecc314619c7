"""Generate README.md from nbs/index.ipynb without Quarto (nbdev_readme needs Quarto, which cannot be installed offline).

Markdown cells are copied; the first cell's `> summary` stays a quote; code cells are dropped unless tagged
`readme` (shown as python blocks); `#| hide` cells are always dropped. Links are written relative to nbs/ (as the
docs site needs them) and rewritten relative to the repository root. `python tools/readme.py --check` exits 1
when README.md is out of date.
"""
import re, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- Generated from nbs/index.ipynb by tools/readme.py (make readme): edit the notebook, not this file. -->\n\n"


def render(nb_path=ROOT / "nbs" / "index.ipynb") -> str:
    nb = nbformat.read(nb_path, as_version=4)
    parts = []
    for c in nb.cells:
        src = c.source.strip("\n")
        if "#| hide" in src: continue
        if c.cell_type == "markdown":
            parts.append(src)
        elif "readme" in c.metadata.get("tags", []):
            parts.append("```python\n" + src + "\n```")
    # links written relative to nbs/ (where the notebook lives) become relative to the repository root: `../x` -> `x`,
    # a sibling notebook `name.ipynb` (a page of the docs site) -> `nbs/name.ipynb`
    text = "\n\n".join(parts).replace("](../", "](")
    text = re.sub(r"\]\((?![a-z]+:)([^)\s/#]+\.ipynb(?:#[^)\s]*)?)\)", r"](nbs/\1)", text)
    return HEADER + text + "\n"


if __name__ == "__main__":
    text, out = render(), ROOT / "README.md"
    if "--check" in sys.argv:
        ok = out.exists() and out.read_text() == text
        print("README.md is up to date" if ok else "README.md is out of date: run `make readme`")
        sys.exit(0 if ok else 1)
    out.write_text(text)
    print(f"wrote {out}")
