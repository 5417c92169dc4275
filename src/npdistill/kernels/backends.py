"""The backend registry: which implementation of the kernels runs ("numpy" | "cython" |
"cuda"), chosen on first use, and the OpenMP policy the compiled kernels load with.

Use it through ``npdistill.kernels`` (``use``, ``using``, ``backend``, ``available``);
only ``npdistill.placement`` above it decides anything by the backend.
"""
import contextlib
import glob
import importlib.util
import os
import warnings

from . import isa as _isa
from . import threads as _threads

# GNU OpenMP reads its wait policy once, when the compiled kernels load it below; a value
# the user set is kept. Where NumPy's BLAS runs on the kernels' OpenMP team (threads.py),
# libgomp's default is right: a thread spins a moment after a region, then sleeps (a
# training step 58 ms, 79-80 under `OMP_WAIT_POLICY=PASSIVE python -m bench.conv_threads`,
# which keeps the user's value). Where OpenBLAS keeps
# its own threads, OpenMP threads that spin after a parallel region steal the cores from
# OpenBLAS's threads in the GEMM that follows: PASSIVE (JSMA 3.9 -> 14 images/s,
# bench/jsma_speed.py, 2 cores).
WAIT_POLICY_SET_HERE = not _threads.plan() and "OMP_WAIT_POLICY" not in os.environ
if WAIT_POLICY_SET_HERE:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from .reference import conv as _numpy_conv  # noqa: E402
from .reference import cw as _numpy_cw  # noqa: E402
from .reference import gemm as _numpy_gemm  # noqa: E402
from .reference import pool as _numpy_pool  # noqa: E402
from .reference import relu as _numpy_relu  # noqa: E402
from .reference import saliency as _numpy_saliency  # noqa: E402
from .reference import winograd as _numpy_winograd  # noqa: E402

BACKENDS = ("numpy", "cython", "cuda")

_impl = {"numpy": {"conv": _numpy_conv, "pool": _numpy_pool, "saliency": _numpy_saliency,
                   "cw": _numpy_cw, "winograd": _numpy_winograd, "relu": _numpy_relu,
                   "gemm": _numpy_gemm}}
_missing = {}
try:
    from .._ext import conv as _cython_conv
    from .._ext import cw as _cython_cw
    from .._ext import gemm as _cython_gemm
    from .._ext import pool as _cython_pool
    from .._ext import relu as _cython_relu
    from .._ext import saliency as _cython_saliency
except ImportError as exc:  # a source checkout that was never built
    _missing["cython"] = f"{exc} (build it with `pip install .` or `pip install -e .`)"
else:
    _impl["cython"] = {"conv": _cython_conv, "pool": _cython_pool, "saliency": _cython_saliency,
                       "cw": _cython_cw, "relu": _cython_relu, "gemm": _cython_gemm}
    try:        # Winograd's products go through SciPy's BLAS; without it, im2col only
        from .._ext import winograd as _cython_winograd
    except ImportError as exc:
        _missing["winograd"] = str(exc)
    else:
        _impl["cython"]["winograd"] = _cython_winograd
    try:        # the direct convolution: AVX-512 or AVX2 (ext/direct_conv.h); else im2col
        from .._ext import direct as _cython_direct
    except ImportError as exc:
        _missing["direct"] = str(exc)
    else:
        if _cython_direct.best() > 0:
            _impl["cython"]["direct"] = _cython_direct
        else:
            _missing["direct"] = ("this CPU has neither AVX-512F nor AVX2 + FMA (or the "
                                  "build left the x86 kernels out): the convolutions run im2col")
    try:        # one OpenMP team for the kernels and NumPy's BLAS (threads.py)
        from .._ext import threads as _cython_threads
    except ImportError as exc:
        _missing["threads"] = str(exc)
    else:
        _impl["cython"]["threads"] = _cython_threads
        _threads.run_forked_children_serially(_cython_threads)


def _load_cuda():
    """Import the CUDA kernels into _impl, or record why they cannot run."""
    if "cuda" in _impl:
        return True
    from .. import cuda
    try:
        _impl["cuda"] = cuda.load()
    except RuntimeError as exc:
        _missing["cuda"] = str(exc)
        return False
    return True


def _gpu_present():
    """numba-cuda installed and an NVIDIA device node here: worth importing numba to check."""
    return (importlib.util.find_spec("numba_cuda") is not None
            and bool(glob.glob("/dev/nvidia[0-9]*")))


def available():
    """The backends that can run here, fastest first ("cuda" only where a GPU is present,
    or when the simulator was asked for with NUMBA_ENABLE_CUDASIM=1 and "cuda" used)."""
    return tuple(name for name in reversed(BACKENDS) if name in _impl)


def _checked(name, variable=None):
    """``name`` if it is a backend that can run here, else a ValueError (naming the
    environment ``variable`` it came from, if any)."""
    said = f"{variable}={name!r}: " if variable else ""
    if name not in BACKENDS:
        raise ValueError(f"{said}unknown backend {name!r}: expected one of {BACKENDS}")
    if name == "cuda":
        _load_cuda()
    if name not in _impl:
        raise ValueError(f"{said}backend {name!r} is not available: {_missing[name]}")
    return name


def use(name):
    """Make ``name`` ("numpy", "cython" or "cuda") the backend of every kernel.

    It overrides ``NPDISTILL_BACKEND``, which is then never read.
    """
    global _active
    _active = _started(_checked(name))


@contextlib.contextmanager
def using(name):
    """``with using("numpy"):`` runs the block on that backend, then restores the one before."""
    previous = backend()
    use(name)
    try:
        yield name
    finally:
        use(previous)


def backend():
    """The name of the active backend, chosen on first use (see the module's docstring)."""
    global _active
    if _active is None:
        _active = _started(_default_backend())
    return _active


def _started(name):
    """``name``, once the compiled kernels' OpenMP team runs NumPy's BLAS too where it is
    "cython" (kernels/threads.py)."""
    if name == "cython" and "threads" in _impl["cython"]:
        _threads.share_blas_threads(_impl["cython"]["threads"])
    if name == "cython" and not _threads.serial_libraries():
        _threads.serial_kernel_blas()
    return name


def _default_backend():
    requested = os.environ.get("NPDISTILL_BACKEND")
    if requested:
        return _checked(requested, "NPDISTILL_BACKEND")
    if _gpu_present() and _load_cuda():
        return "cuda"
    if "cython" in _missing:
        warnings.warn("npdistill: compiled kernels not found, running on the NumPy reference: "
                      + _missing["cython"], RuntimeWarning, stacklevel=4)
    return available()[0]


# Chosen on first use, not at import: a bad NPDISTILL_BACKEND must not break `import
# npdistill` or `npdistill --help`, and `use()` (the CLI's --backend) overrides it unread.
_active = None


def implementation(module):
    """The active backend's module of kernels ``module`` ("conv", "pool", "saliency", "cw",
    "winograd", "direct")."""
    return _impl[backend()][module]


def has(module):
    """Whether the active backend implements the kernels ``module`` (cuda: no "winograd";
    only "cython" on a CPU with AVX-512F or AVX2 has "direct", unless NPDISTILL_ISA caps it
    at "baseline")."""
    if module == "direct":              # the cap read first: a bad NPDISTILL_ISA is refused
        return isa_level() > 0 and module in _impl[backend()]
    return module in _impl[backend()]


def isa_level():
    """The level the direct kernels run at now: 2 AVX-512, 1 AVX2, 0 none (kernels/isa.py:
    the most this build and CPU run, under NPDISTILL_ISA's or use_isa's cap)."""
    direct = _impl.get("cython", {}).get("direct")
    return _isa.capped(direct.best() if direct is not None else 0)


def isa():
    """The instruction set the direct convolution runs now: "avx512", "avx2" or
    "baseline" (im2col)."""
    return _isa.name(isa_level())
