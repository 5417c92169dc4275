"""The tutorials (docs/tutorials/): each one runs top to bottom on real MNIST, and the
committed notebook is its script's cells, executed, with the figures it draws."""
import importlib.util
import json
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "docs" / "tutorials"
_spec = importlib.util.spec_from_file_location("tutorials_build", TUTORIALS / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)
SCRIPTS = build.tutorials()


def _images(book):
    return sum("image/png" in output.get("data", {}) for cell in book["cells"]
               if cell["cell_type"] == "code" for output in cell["outputs"])


def test_there_are_tutorials_and_the_readme_points_to_the_first():
    assert SCRIPTS, "no docs/tutorials/<n>_<name>.py"
    readme = (TUTORIALS.parent.parent / "README.md").read_text()
    assert f"docs/tutorials/{SCRIPTS[0].stem}.ipynb" in readme


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_the_committed_notebook_is_its_script_run_to_the_end(script):
    book = json.loads(script.with_suffix(".ipynb").read_text())
    assert [(c["cell_type"], "".join(c["source"])) for c in book["cells"]] == \
        build.cells(script.read_text())
    code = [c for c in book["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert _images(book) >= 1


def test_a_magic_is_a_comment_in_the_script_and_a_magic_in_the_notebook():
    found = build.cells("# %% [markdown]\n# # Title\n# text\n\n# %%\n# %matplotlib inline\n"
                        "# a comment\nx = 1\n")
    assert found == [("markdown", "# Title\ntext"),
                     ("code", "%matplotlib inline\n# a comment\nx = 1")]


@pytest.mark.mnist
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_the_tutorial_runs_on_real_mnist(script, mnist_dir, tmp_path, monkeypatch):
    pytest.importorskip("nbclient")
    monkeypatch.setenv("NPDISTILL_DATA", str(mnist_dir.parent))
    written = build.run(script, tmp_path)              # a cell's error fails here
    book = json.loads(written.read_text())
    assert _images(book) == _images(json.loads(script.with_suffix(".ipynb").read_text()))
