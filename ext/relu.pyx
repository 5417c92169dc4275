# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""ReLU on 1-D arrays in one pass each way, split over the cores (the compiled twin of
npdistill/kernels/reference/relu.py). NumPy's ufuncs take two passes forward (the maximum, the
mask) and one core each."""
from cython.parallel cimport prange
from _types cimport floating


def forward(const floating[::1] x,        # IN
            floating[::1] out,            # OUT max(x, 0), NaN kept
            unsigned char[::1] mask):     # OUT x > 0
    cdef Py_ssize_t i
    cdef floating v
    for i in prange(x.shape[0], nogil=True, schedule="static"):
        v = x[i]                          # read once: the mask's bytes may alias x
        mask[i] = v > 0
        out[i] = 0 if v <= 0 else v       # a select, no branch


def backward(const floating[::1] dy,            # IN  (S * M,)
             const unsigned char[::1] mask,     # IN  (M,)
             floating[::1] dx):                 # OUT (S * M,) dy * mask
    cdef Py_ssize_t M = mask.shape[0], S = dy.shape[0] // M, r, i
    for r in range(S):
        for i in prange(M, nogil=True, schedule="static"):
            dx[r * M + i] = dy[r * M + i] * mask[i]
