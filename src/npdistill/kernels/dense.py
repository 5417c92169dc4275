"""NumPy reference of the dense pieces the GPU backend computes itself (npdistill/cuda/dense.py).

On the CPU these are one BLAS call or one NumPy reduction inside the layers;
they are written out here as the specification the CUDA kernels are tested against.
"""


def gemm(a, b, out, trans_a=False, trans_b=False, accumulate=False):
    """out = op(a) @ op(b) (or out += ... when ``accumulate``); op transposes when asked."""
    product = (a.T if trans_a else a) @ (b.T if trans_b else b)
    if accumulate:
        out += product
    else:
        out[...] = product


def bias_add(y, b):
    """y (R, F) += b (F,), in place."""
    y += b


def column_sum(dy, out):
    """out (F,) = the sum of dy (R, F) over its rows (a bias gradient)."""
    out[...] = dy.sum(axis=0)
