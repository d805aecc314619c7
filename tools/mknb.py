"""Author a notebook from a plain-text cell script (developer tool, not part of the package).

Format: cells separated by lines starting with `# %%` (code) or `# %% [markdown]` (markdown).
`# %% tags=["parameters"]` adds cell tags. Usage: python tools/mknb.py src.py nbs/XX_name.ipynb   (build)
       python tools/mknb.py nbs/XX_name.ipynb src.py   (unbuild, to edit an existing notebook as text)
Keep the cell scripts outside the repo (e.g. /tmp/nbsrc/): the notebooks are the source of truth.
"""
import json, re, sys
import nbformat


def build(src: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    cells, kind, tags, buf = [], None, [], []

    def flush():
        if kind is None: return
        text = "\n".join(buf).strip("\n")
        if kind == "markdown":
            text = "\n".join(l[2:] if l.startswith("# ") else (l[1:] if l.startswith("#") else l) for l in text.split("\n"))
            c = nbformat.v4.new_markdown_cell(text)
        else:
            c = nbformat.v4.new_code_cell(text)
        if tags: c.metadata["tags"] = tags
        cells.append(c)

    for line in src.split("\n"):
        m = re.match(r"^# %%(.*)$", line)
        if m:
            flush(); buf = []
            rest = m.group(1).strip()
            kind = "markdown" if rest.startswith("[markdown]") else "code"
            t = re.search(r"tags=(\[.*\])", rest)
            tags = json.loads(t.group(1)) if t else []
        else:
            buf.append(line)
    flush()
    nb.cells = cells
    return nb




def unbuild(nb) -> str:
    "Inverse of `build`: notebook -> cell script, so an existing notebook can be edited as text."
    out = []
    for c in nb.cells:
        tags = c.metadata.get("tags", [])
        t = f" tags={json.dumps(tags)}" if tags else ""
        if c.cell_type == "markdown":
            out.append("# %% [markdown]" + t)
            out += ["# " + l if l else "#" for l in c.source.split("\n")]
        else:
            out.append("# %%" + t)
            out += c.source.split("\n")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    src, dst = sys.argv[1], sys.argv[2]
    if src.endswith(".ipynb"):
        open(dst, "w").write(unbuild(nbformat.read(src, as_version=4)))
    else:
        nbformat.write(build(open(src).read()), dst)
