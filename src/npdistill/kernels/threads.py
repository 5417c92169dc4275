"""Who runs NumPy's BLAS: OpenBLAS's own threads, or the compiled kernels' OpenMP team.

A training step alternates GEMMs (NumPy's OpenBLAS) with compiled kernels (OpenMP). Each
library keeps a pool of threads, and an idle OpenBLAS thread spins for about 0.1 s after
every call: on a 2-core machine it takes a core from the OpenMP loop that follows
(bench/conv_threads.py: a training step 65 -> 56 ms with im2col, 101 -> 59 ms with
Winograd, once both run on one team). OpenBLAS 0.3.27+ lets a caller run its parallel
work (``openblas_set_threads_callback_function``); ``share_blas_threads`` registers
ext/threads.pyx's ``run_jobs`` with the pthreads OpenBLAS loaded when npdistill.kernels
is imported (NumPy's), which puts NumPy's GEMMs on the OpenMP team the kernels use.
OpenBLAS still splits each call into the same jobs, so every result is the same to the bit.

The layers' own products do not go through NumPy's BLAS: ext/gemm.pyx cuts them into
pieces fixed by the shapes and runs each piece as a single-threaded call of SciPy's BLAS
on the OpenMP team (``serial_kernel_blas`` sets that BLAS to one thread), so that their
bits do not depend on the thread count: OpenBLAS's threaded and single-threaded drivers
round differently.

``NPDISTILL_BLAS_THREADS=openblas`` keeps OpenBLAS's own threads; the default is
"openmp", taken when the "cython" backend is first used. A process forked from one that
loaded the kernels runs OpenBLAS's own threads again and the kernels on one thread: GNU
OpenMP cannot run a parallel region in the forked child of a process that ran one (it
hangs), which a ``multiprocessing`` pool on Linux does by default.
"""
import ctypes
import os

BLAS_THREADS = ("openmp", "openblas")

# the names OpenBLAS builds export the two functions under (NumPy's and SciPy's wheels
# prefix them, and NumPy's 64-bit-integer build suffixes them)
_SETTERS = ("scipy_openblas_set_threads_callback_function64_",
            "scipy_openblas_set_threads_callback_function",
            "openblas_set_threads_callback_function64_",
            "openblas_set_threads_callback_function")
_PARALLEL = ("scipy_openblas_get_parallel64_", "scipy_openblas_get_parallel",
             "openblas_get_parallel64_", "openblas_get_parallel")
# SciPy's wheels' OpenBLAS (32-bit integers: no suffix), or a BLAS the two share
_SET_THREADS = ("scipy_openblas_set_num_threads", "openblas_set_num_threads")
_PTHREADS = 1       # openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP

_planned: list = []  # (library path, its setter): the OpenBLAS to share, found by plan()
_shared: list = []   # those where run_jobs is registered
_decided = False


def _loaded_libraries():
    """Paths of the shared libraries mapped into this process (Linux; none elsewhere)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps if "/" in line}
    except OSError:
        return []
    return sorted(path for path in paths if ".so" in os.path.basename(path))


def _function(library, names):
    for name in names:
        try:
            return getattr(library, name)
        except AttributeError:
            continue
    return None


def _pthreads_openblas():
    """(path, setter) of each loaded OpenBLAS that runs its own pthreads pool and takes a
    threads callback."""
    found, seen = [], set()
    for path in _loaded_libraries():
        name = os.path.basename(path).lower()
        if not (name.startswith("lib") and "blas" in name):     # not modules linking one
            continue
        try:
            library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)
        except OSError:
            continue
        setter, parallel = _function(library, _SETTERS), _function(library, _PARALLEL)
        if setter is None or parallel is None:
            continue
        parallel.restype = ctypes.c_int
        address = ctypes.cast(setter, ctypes.c_void_p).value
        if parallel() == _PTHREADS and address not in seen:
            seen.add(address)
            setter.argtypes = [ctypes.c_void_p]
            found.append((path, setter))
    return found


def _requested():
    value = os.environ.get("NPDISTILL_BLAS_THREADS", "openmp")
    if value not in BLAS_THREADS:
        raise ValueError(f"NPDISTILL_BLAS_THREADS={value!r}: expected one of {BLAS_THREADS}")
    return value


def plan():
    """Whether NumPy's BLAS will run on the kernels' OpenMP team: asked before the compiled
    kernels load GNU OpenMP, which reads its wait policy then (kernels/backends.py). Finds
    the pthreads OpenBLAS loaded now, NumPy's; a bad NPDISTILL_BLAS_THREADS plans nothing
    here and is refused at first use, so that ``import npdistill`` never fails on it."""
    global _planned
    try:
        wanted = _requested()
    except ValueError:
        wanted = None
    _planned = _pthreads_openblas() if wanted == "openmp" else []
    return bool(_planned)


def share_blas_threads(extension):
    """Run NumPy's BLAS on the OpenMP team of ``extension`` (the compiled
    npdistill._ext.threads), as planned; once per process."""
    global _decided
    if _decided:
        return
    _requested()
    _decided = True
    address = ctypes.c_void_p(extension.callback_address())
    for path, setter in _planned:
        setter(address)
        _shared.append((path, setter))


def run_forked_children_serially(extension):
    """Make a process forked from this one run OpenBLAS's own threads (they restart after
    a fork) and the compiled kernels on one OpenMP thread."""
    def after_fork():
        for _, setter in _shared:
            setter(None)
        _shared.clear()
        extension.run_serially()
        os.environ["OMP_NUM_THREADS"] = "1"

    os.register_at_fork(after_in_child=after_fork)


def serial_kernel_blas():
    """Set every loaded OpenBLAS with a 32-bit-integer interface (SciPy's, whose
    ``cython_blas`` the compiled products call from their OpenMP threads) to one thread:
    each call is then one piece computed by the single-threaded driver, whatever thread
    runs it. Returns the libraries set (empty where SciPy's BLAS is not an OpenBLAS, whose
    threading is then its own: ``environment()`` records the BLAS)."""
    done = []
    for path in _loaded_libraries():
        name = os.path.basename(path).lower()
        if not (name.startswith("lib") and "blas" in name):
            continue
        try:
            library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)
        except OSError:
            continue
        setter = _function(library, _SET_THREADS)
        if setter is not None:
            setter.argtypes = [ctypes.c_int]
            setter(1)
            done.append(path)
    _serial[:] = done
    return done


_serial: list = []   # the libraries serial_kernel_blas set to one thread


def serial_libraries():
    """The BLAS libraries the compiled products call, each set to one thread."""
    return list(_serial)


def blas_threads():
    """"openmp" where NumPy's BLAS runs on the kernels' OpenMP team, else "openblas"."""
    return "openmp" if _shared else "openblas"


def shared_libraries():
    """The OpenBLAS libraries whose parallel work the OpenMP team runs."""
    return [path for path, _ in _shared]
