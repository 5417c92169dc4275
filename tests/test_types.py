"""The typed API: mypy passes on the package (its configuration in pyproject.toml), the
public functions carry annotations, and the API reference builds from the docstrings."""
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import npdistill as nd

REPO = Path(__file__).resolve().parents[1]

# the public API the annotations cover (issue 42): every function and class of these
PUBLIC = [nd.attacks, nd.defenses, nd.metrics, nd.datasets, nd.interop, nd.placement,
          nd.progress, nd.teaching, nd.plots]
PUBLIC_FUNCTIONS = [nd.train, nd.distill, nd.defensive_distillation, nd.jacobian, nd.load_model]


def _public_callables():
    for module in PUBLIC:
        listed = getattr(module, "__all__", None)
        for name in listed or dir(module):
            item = getattr(module, name)
            # a module without __all__: the functions it defines, not those it imports
            if not name.startswith("_") and inspect.isfunction(item) and \
                    (listed or item.__module__ == module.__name__):
                yield f"{module.__name__}.{name}", item
    for item in PUBLIC_FUNCTIONS:
        yield f"npdistill.{item.__name__}", item


@pytest.mark.parametrize("name, function", list(_public_callables()),
                         ids=[name for name, _ in _public_callables()])
def test_every_public_function_is_annotated(name, function):
    signature = inspect.signature(function)
    missing = [p for p, param in signature.parameters.items()
               if param.annotation is inspect.Parameter.empty
               and param.kind not in (param.VAR_POSITIONAL,)]
    assert not missing, f"{name}: parameters without a type: {missing}"
    assert signature.return_annotation is not inspect.Signature.empty, f"{name}: no return type"


def test_mypy_passes_on_the_package():
    pytest.importorskip("mypy")
    checked = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True,
                             text=True, timeout=600)
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-2000:]


def test_the_package_says_it_is_typed():
    assert (Path(nd.__file__).parent / "py.typed").is_file()


def test_the_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("pdoc")
    built = subprocess.run([sys.executable, "-W", "error::UserWarning", "-m", "pdoc",
                            "npdistill", "-o", str(tmp_path)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0 and "Warn" not in built.stderr, built.stderr[-4000:]
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    for module in ("attacks", "train", "progress", "teaching", "plots", "typing"):
        assert f"npdistill/{module}.html" in pages, sorted(pages)
    page = (tmp_path / "npdistill" / "attacks.html").read_text()
    # the annotations and the docstring reach the page: fgsm's signature and its summary
    assert "AttackResult" in page and "Fast gradient sign method" in page
