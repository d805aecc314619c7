"""The results registry (results/ in the repository) from the shell; the code is in unsupervised_landmarks.ablations.

    python tools/results.py register RUN_DIR [--name NAME] [--notes TEXT] [--command CMD] [--overwrite]
    python tools/results.py table [--link-prefix results/]     # print the registry table as markdown
    python tools/results.py readme                             # re-render results/README.md
    python tools/results.py command RUN_DIR                     # print the command that reproduces a run folder

RUN_DIR is a finished training run (config.json + eval/results.json), an ablation folder (results.json) or a sweep
folder (sweep.json). `register` copies its small files into results/<name>/ with the reproducing command and
re-renders results/README.md.
"""
import argparse, sys
from pathlib import Path

from unsupervised_landmarks.ablations import register_run, registry_table, update_registry_readme, reproduce_command


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools/results.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--registry", default=None, help="registry folder (default: results/ of the repository)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("register", help="copy a finished run / ablation / sweep into the registry")
    r.add_argument("run_dir"); r.add_argument("--name", default=None, help="registry name (default: the folder's name)")
    r.add_argument("--notes", default=""); r.add_argument("--command", default=None, help="override the reproducing command")
    r.add_argument("--overwrite", action="store_true"); r.add_argument("--no-figures", action="store_true")
    t = sub.add_parser("table", help="print the registry table (markdown)")
    t.add_argument("--link-prefix", default="", help="prefix of the links to entries, e.g. results/ from the repo root")
    sub.add_parser("readme", help="re-render the table in results/README.md")
    c = sub.add_parser("command", help="print the command that reproduces a run folder")
    c.add_argument("run_dir"); c.add_argument("--name", default=None)
    a = ap.parse_args(argv)
    if a.cmd == "register":
        dest = register_run(a.run_dir, a.name, registry=a.registry, command=a.command, notes=a.notes, overwrite=a.overwrite,
                            figures=not a.no_figures)
        print(f"registered {dest}\n{(dest / 'command.sh').read_text().splitlines()[-1]}")
    elif a.cmd == "table":
        print(registry_table(a.registry, link_prefix=a.link_prefix))
    elif a.cmd == "readme":
        print(f"wrote {update_registry_readme(a.registry)}")
    else:
        print(reproduce_command(Path(a.run_dir), a.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
