"""NumPy reference of the GEMM the GPU backend computes itself (npdistill/cuda/dense.py).

On the CPU it is one BLAS call inside the layers; it is written out here as the
specification the CUDA kernel is tested against.
"""


def gemm(a, b, out, trans_a=False, trans_b=False, accumulate=False):
    """out = op(a) @ op(b) (or out += ... when ``accumulate``); op transposes when asked."""
    product = (a.T if trans_a else a) @ (b.T if trans_b else b)
    if accumulate:
        out += product
    else:
        out[...] = product
