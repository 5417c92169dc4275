"""Layout helpers of the kernels: the layers see NCHW arrays, the convolution and pooling
kernels work channels-last, where every window row is one contiguous run."""
import math

import numpy as np


def conv_output_size(in_size, kernel, pad_before, pad_after):
    return in_size + pad_before + pad_after - kernel + 1


# The kernels' outputs are NCHW views of channels-last memory, so that the next kernel
# reads them without a copy (``channels_last`` is then free) and the GEMM output of a
# convolution is already its result.
def channels_last(x):
    """The (N, H, W, C) C-contiguous array behind x (N, C, H, W); a copy only when needed.

    It has the strides of a new array: NumPy calls the transposed view of single-channel
    images contiguous whatever its last stride, and cuda.to_device keeps such strides,
    which Numba's device reshape then refuses ("operation requires copying").
    """
    xh = x.transpose(0, 2, 3, 1)
    if xh.flags.c_contiguous:
        return xh.reshape(-1).reshape(xh.shape)        # a view still, with standard strides
    return np.ascontiguousarray(xh)


def empty_nchw(shape, dtype):
    """An uninitialised NCHW array of ``shape`` backed by channels-last memory."""
    n, c, h, w = shape
    return np.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)


def reusable_buffer(shape, dtype, out):
    """The leading entries of ``out``'s storage as an array of ``shape``, or a new array.

    ``out`` is what an earlier call returned: possibly a view of a larger
    storage (a partial last block); its whole storage is reused, so that a
    smaller call never shrinks the buffer and the next full block reallocates.
    """
    if out is not None and out.base is not None:
        out = out.base
    size = math.prod(shape)        # not np.prod: called for every block, its overhead shows
    if out is None or out.dtype != dtype or out.size < size or not out.flags.c_contiguous:
        return np.empty(shape, dtype=dtype)
    return out.reshape(-1)[:size].reshape(shape)


def contiguous(name, a, dtype, ndim):
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim \
            or not a.flags.c_contiguous:
        raise TypeError(f"{name} must be a C-contiguous {ndim}-d {np.dtype(dtype)} array, got "
                        f"{type(a).__name__} {getattr(a, 'dtype', '')} {getattr(a, 'shape', '')}")
    return a
