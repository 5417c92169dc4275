"""Launch helpers shared by the kernel modules: grid sizes, host <-> device moves."""
import numpy as np
from numba import config, cuda

SIMULATED = bool(config.ENABLE_CUDASIM)  # type: ignore[attr-defined]  # set at import by numba
# Threads per block (a power of two: the block reductions halve it). The simulator
# runs every thread as a Python thread: few threads, few blocks, long grid-stride loops.
THREADS = 8 if SIMULATED else 256
MAX_BLOCKS = 2 if SIMULATED else 4096


def blocks(n):
    """Blocks of THREADS threads for n elements (grid-stride kernels)."""
    return max(1, min(MAX_BLOCKS, (n + THREADS - 1) // THREADS))


def is_host(a):
    return isinstance(a, np.ndarray)


def launch(kernel, grid, block, args, outputs=()):
    """Run ``kernel[grid, block](*args)`` with NumPy arguments moved to the device,
    then copy the arguments at the indices ``outputs`` back into their NumPy arrays."""
    moved = [cuda.to_device(np.ascontiguousarray(a)) if is_host(a) else a for a in args]
    kernel[grid, block](*moved)
    for i in outputs:
        if is_host(args[i]):
            if not args[i].flags.c_contiguous:
                raise ValueError(f"output argument {i} must be C-contiguous, got strides "
                                 f"{args[i].strides}")
            moved[i].copy_to_host(args[i])


@cuda.jit(device=True)
def block_sum(partial, value):
    """The sum of every thread's ``value`` over the block, returned to all of them.

    partial : a shared float64 array of THREADS entries; blockDim.x a power of two.
    """
    tid = cuda.threadIdx.x
    partial[tid] = value
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if tid < stride:
            partial[tid] += partial[tid + stride]
        cuda.syncthreads()
        stride //= 2
    return partial[0]
