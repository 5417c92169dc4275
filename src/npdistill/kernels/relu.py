"""ReLU's forward and backward passes over arrays in any memory layout (reference/relu.py;
ext/relu.pyx)."""
import numpy as np

from .backends import has, implementation
from .reference import relu as _numpy_relu


def _in_memory_order(a):
    """a's values as a 1-D view in the order they lie in memory, or None where they are not
    one dense block (a slice with gaps)."""
    flat = a.ravel(order="K")
    return flat if np.may_share_memory(flat, a) else None


def _relu_kernels():
    return implementation("relu") if has("relu") else _numpy_relu   # cuda: arrays on the host


def relu_forward(x):
    """(max(x, 0), x > 0) of a float array, both in x's memory layout (an NCHW view of
    channels-last memory gives NCHW views of channels-last memory)."""
    flat = _in_memory_order(x)
    if flat is None:
        x = np.copy(x, order="K")
        flat = _in_memory_order(x)
    out = np.empty_like(x)
    mask = np.empty_like(x, dtype=bool)
    _relu_kernels().forward(flat, _in_memory_order(out), _in_memory_order(mask).view(np.uint8))
    return out, mask


def relu_backward(dy, mask):
    """dy * mask for dy (S * N, ...) holding S stacked copies of mask's shape (N, ...),
    in mask's memory layout."""
    if len(dy) % len(mask) or dy.shape[1:] != mask.shape[1:]:
        raise ValueError(f"dy of shape {dy.shape} does not stack copies of the mask's shape "
                         f"{mask.shape}")
    dx = np.empty_like(mask, dtype=dy.dtype, shape=dy.shape)
    if dx.strides != dy.strides or _in_memory_order(dy) is None:
        dx[...] = dy                            # dy in the mask's layout, then in place
        dy = dx
    _relu_kernels().backward(_in_memory_order(dy), _in_memory_order(mask).view(np.uint8),
                             _in_memory_order(dx))
    return dx
