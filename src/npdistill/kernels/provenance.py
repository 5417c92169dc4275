"""What a run's numbers depend on: the ``environment`` block of results.json and model files.

The same seed gives the same bits on any thread count and any number of Dask workers
(kernels/reference/gemm.py); what can change the bits is recorded here: the library and its git
revision, Python, NumPy, SciPy, Cython and Numba, the BLAS libraries (NumPy's, and
SciPy's, which the compiled products call), the backend, the convolution algorithm the
paper's layers run, the thread settings, and the CPU with its SIMD features (the AVX-512
direct kernels and im2col round differently).
"""
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from .. import _version
from . import threads
from .backends import backend, isa
from .convolution import conv_algorithm

SIMD = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
        "avx512_bf16", "amx_tile", "neon", "asimd", "sve")


def _package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_revision():
    """The commit of the checkout the package was installed from, "<commit>+dirty" with
    uncommitted changes, or None (an installed wheel, or no git)."""
    source = Path(__file__).resolve().parents[3]          # src/npdistill/kernels -> root
    if not (source / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=source, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _blas(show_config):
    """{name, version, configuration} of a library's BLAS from its show_config."""
    try:
        blas = show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:                          # an old NumPy/SciPy without mode="dicts"
        return None
    return {key: blas.get(key) for key in ("name", "version", "openblas configuration")
            if blas.get(key) is not None}


def cpu():
    """(model name, sorted SIMD features of SIMD) of this CPU, from /proc/cpuinfo on Linux."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model") and model in ("", platform.machine()):
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, sorted(f for f in SIMD if f in flags)


def environment():
    """What a run's numbers depend on, as a JSON-ready dict (the module's docstring):
    versions, BLAS, backend, the convolution algorithm of the paper's layers (3x3,
    32 -> 64 channels) per dtype, threads, CPU."""
    import scipy

    convolution = {dtype.__name__: conv_algorithm(32, 64, 3, 10, 10, dtype)
                   for dtype in (np.float32, np.float64)}

    model, simd = cpu()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "npdistill": _version.__version__, "git": git_revision(),
        "python": platform.python_version(), "numpy": np.__version__,
        "scipy": scipy.__version__, "cython": _package_version("Cython"),
        "numba": _package_version("numba"),
        "blas": {"numpy": _blas(np.show_config), "scipy": _blas(scipy.show_config)},
        "backend": backend(),
        "convolution": convolution,
        "isa": isa(),
        "threads": {"cores": cores, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "blas_threads": threads.blas_threads(),
                    "serial_blas": [os.path.basename(p) for p in threads.serial_libraries()]},
        "cpu": {"model": model, "machine": platform.machine(), "simd": simd},
        "platform": sys.platform,
    }


def summary(env):
    """The environment block in one line (results.md)."""
    blas = (env["blas"].get("scipy") or {}).get("version", "?")
    git = env["git"] and env["git"][:12] + ("+dirty" if env["git"].endswith("+dirty") else "")
    return (f"npdistill {env['npdistill']}" + (f" ({git})" if git else "")
            + f", Python {env['python']}, NumPy {env['numpy']}, SciPy {env['scipy']} "
            f"(OpenBLAS {blas}), backend {env['backend']}, convolution "
            f"{env['convolution']['float32']}"
            + (f" ({env['isa']})" if env.get("isa", "baseline") != "baseline" else "")
            + f", {env['threads']['cores']} cores, "
            f"{env['cpu']['model']} ({', '.join(env['cpu']['simd']) or 'no SIMD flags read'})")
