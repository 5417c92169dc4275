"""The package as a user gets it: an sdist that carries the Cython sources and builds, and
the README's install step (`pip install .`) followed by `python -m npdistill` run from the
checkout, which must land on the installed, compiled package, not on the source tree."""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.test_datasets import write_mnist

REPO = Path(__file__).resolve().parents[1]


def tracked(pattern):
    """The repository's files matching a glob pattern, relative to its root."""
    return sorted(p.relative_to(REPO).as_posix() for p in REPO.glob(pattern))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation",
                            "--outdir", str(out), str(REPO)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (archive,) = out.glob("npdistill-*.tar.gz")
    return archive


def test_the_sdist_carries_the_cython_sources_and_nothing_built(sdist):
    with tarfile.open(sdist) as archive:
        root = archive.getnames()[0].split("/")[0]
        members = {name.removeprefix(root + "/") for name in archive.getnames()}
    wanted = ["LICENSE", "README.md", "pyproject.toml", "setup.py", "MANIFEST.in",
              *tracked("ext/*.pyx"), *tracked("ext/*.pxd"), *tracked("ext/*.h"),
              *tracked("src/npdistill/**/*.py"), "src/npdistill/py.typed"]
    assert "ext/conv.pyx" in wanted and "ext/_types.pxd" in wanted
    assert "ext/direct_conv.h" in wanted and "ext/pool_kernels.h" in wanted
    assert sorted(set(wanted) - members) == []
    built = [m for m in members if m.endswith((".c", ".cpp", ".so", ".pyd", ".o", ".html"))]
    assert built == []                 # Cython's C is generated at build time, from the .pyx


def test_pip_install_then_python_m_npdistill_from_the_checkout_runs_compiled(sdist, tmp_path):
    """The README's first command, with the sdist for `.` and a target folder for the venv."""
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                                "--no-build-isolation", "--no-cache-dir", "--quiet",
                                "--target", str(site), str(sdist)],
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    assert list((site / "npdistill" / "_ext").glob("conv.*")), "no compiled kernels installed"
    assert (site / "npdistill" / "py.typed").is_file(), "the PEP 561 marker is not installed"
    write_mnist(tmp_path / "mnist", n_train=64, n_test=16)
    env = {k: v for k, v in os.environ.items() if k not in ("NPDISTILL_BACKEND", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    where = subprocess.run([sys.executable, "-c", "import npdistill; print(npdistill.__file__)"],
                           cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(site), \
        f"run from the checkout, `import npdistill` found {where.stdout.strip()}"
    run = subprocess.run([sys.executable, "-m", "npdistill", "train", "--data",
                          str(tmp_path / "mnist"), "--epochs", "1", "--quiet"],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "compiled kernels not found" not in run.stderr
    assert "backend: numpy" not in run.stderr and "backend: " in run.stderr
    assert "test accuracy:" in run.stdout
