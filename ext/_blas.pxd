# One single-threaded BLAS product for the compiled kernels (SciPy's cython_blas, held
# to one thread by kernels/threads.py), in float32 and float64: c = a b + beta c in
# BLAS's column-major terms (a row-major (m, n) array is the column-major (n, m) matrix).
from scipy.linalg.cython_blas cimport dgemm, sgemm
from _types cimport floating


cdef inline void gemm(char *ta, char *tb, int m, int n, int k, const floating *a, int lda,
                      const floating *b, int ldb, floating beta, floating *c,
                      int ldc) noexcept nogil:
    cdef floating one = 1
    if floating is float:
        sgemm(ta, tb, &m, &n, &k, &one, <float *> a, &lda, <float *> b, &ldb, &beta, c, &ldc)
    else:
        dgemm(ta, tb, &m, &n, &k, &one, <double *> a, &lda, <double *> b, &ldb, &beta, c,
              &ldc)
