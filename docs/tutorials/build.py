"""Build the tutorials' notebooks from their sources and run them.

Each tutorial is written as a percent-format script, ``docs/tutorials/<name>.py`` (cells
start at ``# %%``; ``# %% [markdown]`` cells are Markdown in ``# `` comments; an IPython
magic is a comment, ``# %matplotlib inline``): that is
what is reviewed and diffed. This turns it into ``<name>.ipynb``, executes it top to
bottom in a fresh Python kernel and saves the notebook with its outputs (what GitHub
renders and the README links):

    python docs/tutorials/build.py                 # every tutorial
    python docs/tutorials/build.py vanishing_gradients --out /tmp/nb

Needs the test extra (nbformat, nbclient, ipykernel) and MNIST where npdistill finds it
($NPDISTILL_DATA/mnist). A cell that raises stops the build with the cell's error.
"""
import argparse
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_CELL = re.compile(r"^# %%(?P<markdown> \[markdown\])?[^\n]*$", re.M)
_MAGIC = re.compile(r"^# %[a-z]")


def cells(source):
    """[(kind, text)] of a percent-format script: kind "markdown" or "code"."""
    starts = list(_CELL.finditer(source))
    found = []
    for at, match in enumerate(starts):
        end = starts[at + 1].start() if at + 1 < len(starts) else len(source)
        body = source[match.end():end].strip("\n")
        if match["markdown"]:
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                             for line in body.splitlines())
            found.append(("markdown", body))
        else:        # an IPython magic is kept as a comment in the script: "# %matplotlib"
            found.append(("code", "\n".join(line[2:] if _MAGIC.match(line) else line
                                             for line in body.splitlines())))
    return found


def notebook(script):
    """The nbformat notebook of a percent-format script (not run)."""
    import nbformat
    made = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    book = nbformat.v4.new_notebook(cells=[made[kind](text) for kind, text in
                                           cells(Path(script).read_text())])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                   "language": "python"}
    return book


def run(script, out_dir=HERE, timeout=900):
    """Build ``script``'s notebook, execute it and write it to out_dir/<name>.ipynb."""
    import nbformat
    from nbclient import NotebookClient
    book = notebook(script)
    NotebookClient(book, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE.parent.parent)}}).execute()
    target = Path(out_dir) / (Path(script).stem + ".ipynb")
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.ipynb")
    nbformat.write(book, tmp)
    os.replace(tmp, target)
    return target


def tutorials():
    """The tutorial scripts, in the order they are read."""
    return sorted(p for p in HERE.glob("[0-9]*.py"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="tutorials to build (default: all)")
    parser.add_argument("--out", default=str(HERE), help="folder for the .ipynb files")
    args = parser.parse_args()
    chosen = [p for p in tutorials() if not args.names or p.stem in args.names
              or p.stem.split("_", 1)[1] in args.names]
    if not chosen:
        sys.exit(f"no tutorial named {args.names}; there are {[p.stem for p in tutorials()]}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for script in chosen:
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        print(f"wrote {run(script, args.out)}", file=sys.stderr)


if __name__ == "__main__":
    main()
