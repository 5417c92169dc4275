# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""One pool of threads for NumPy's BLAS and the compiled kernels.

OpenBLAS (0.3.27 and later) hands its parallel work to a caller's function when one is
registered with ``openblas_set_threads_callback_function``: ``run_jobs`` below runs the
jobs of one BLAS call on this extension's OpenMP threads, the same libgomp team the other
kernels' ``prange`` loops use. With OMP_WAIT_POLICY=PASSIVE those threads sleep between
regions, so no idle pool spins on the cores while another works (OpenBLAS's own threads
spin for ~0.1 s after every call). npdistill/kernels/threads.py registers it.

OpenBLAS gives job i its per-thread buffer ``i``: two BLAS calls from two Python threads at
once would share buffers (OpenBLAS locks its GEMMs itself, not its matrix-vector products:
those came out wrong by ~1e2, tests/kernels/test_threads.py), so the calls take a lock and
run one after the other.
"""
from cython.parallel cimport prange
cimport openmp

ctypedef void (*dojob_t)(int thread_num, void *jobdata, int dojob_data) noexcept nogil

cdef openmp.omp_lock_t _lock
openmp.omp_init_lock(&_lock)
cdef long _calls = 0


cdef void run_jobs(int sync, dojob_t dojob, int numjobs, size_t jobdata_elsize,
                   void *jobdata, int dojob_data) noexcept nogil:
    """The callback: jobs 0 .. numjobs - 1 of one BLAS call, job i on thread i of a team."""
    global _calls
    cdef int i
    cdef char *jobs = <char *> jobdata
    openmp.omp_set_lock(&_lock)
    _calls += 1
    for i in prange(numjobs, schedule="static", num_threads=numjobs):
        dojob(i, jobs + i * jobdata_elsize, dojob_data)
    openmp.omp_unset_lock(&_lock)


def callback_address():
    """The address of ``run_jobs``, for ctypes to pass to OpenBLAS."""
    return <size_t> &run_jobs


def calls():
    """How many BLAS calls ``run_jobs`` has run (the tests' witness that it is in use)."""
    return _calls


def run_serially():
    """Run later parallel regions of this process on one thread: after ``fork`` GNU
    OpenMP's team of the parent is gone, and a parallel region with more threads hangs."""
    openmp.omp_set_num_threads(1)
