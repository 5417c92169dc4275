"""Dense algebra on the GPU: a tiled shared-memory GEMM, bias add and column sums
(the specification: kernels/dense.py)."""
import numpy as np
from numba import cuda, float32, float64

from ._launch import SIMULATED, THREADS, block_sum, blocks, launch

# a TILE x TILE block of threads computes a TILE x TILE tile of the output. The
# simulator too: its cost is per barrier round, not per thread, and with 16 x 16
# tiles rather than 4 x 4 `python -m pytest tests/cuda` ran in 256 s instead of ~680 s
TILE = 16
MAX_TILE_BLOCKS = 2 if SIMULATED else 65535


def _make_gemm(element):
    @cuda.jit
    def gemm(a, b, out, trans_a, trans_b, accumulate, zero):
        tile_a = cuda.shared.array((TILE, TILE), element)
        tile_b = cuda.shared.array((TILE, TILE), element)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        rows, cols = out.shape
        inner = a.shape[0] if trans_a else a.shape[1]
        tiles_across = (cols + TILE - 1) // TILE
        n_tiles = tiles_across * ((rows + TILE - 1) // TILE)
        for tile in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):   # grid-stride over tiles
            row = (tile // tiles_across) * TILE + ty
            col = (tile % tiles_across) * TILE + tx
            acc = zero
            for t in range((inner + TILE - 1) // TILE):
                k = t * TILE + tx                     # tile_a[ty, tx] = op(a)[row, k]
                if row < rows and k < inner:
                    tile_a[ty, tx] = a[k, row] if trans_a else a[row, k]
                else:
                    tile_a[ty, tx] = zero
                k = t * TILE + ty                     # tile_b[ty, tx] = op(b)[k, col]
                if col < cols and k < inner:
                    tile_b[ty, tx] = b[col, k] if trans_b else b[k, col]
                else:
                    tile_b[ty, tx] = zero
                cuda.syncthreads()
                for kk in range(TILE):
                    acc += tile_a[ty, kk] * tile_b[kk, tx]
                cuda.syncthreads()
            if row < rows and col < cols:
                if accumulate:
                    out[row, col] += acc
                else:
                    out[row, col] = acc
    return gemm


_GEMM = {np.dtype(np.float32): _make_gemm(float32), np.dtype(np.float64): _make_gemm(float64)}


@cuda.jit
def _bias_add(y, b):
    f = b.shape[0]
    for idx in range(cuda.grid(1), y.shape[0] * f, cuda.gridsize(1)):
        y[idx // f, idx % f] += b[idx % f]


@cuda.jit
def _column_sum(dy, out):
    # one block per column, its threads stride over the rows, then a tree in shared memory
    col = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    partial = cuda.shared.array(THREADS, float64)
    total = 0.0
    for r in range(tid, dy.shape[0], cuda.blockDim.x):
        total += dy[r, col]
    total = block_sum(partial, total)
    if tid == 0:
        out[col] = total


def gemm(a, b, out, trans_a=False, trans_b=False, accumulate=False):
    """out = op(a) @ op(b) (or out += ... when ``accumulate``); op transposes when asked."""
    rows_a, inner = (a.shape[1], a.shape[0]) if trans_a else a.shape
    inner_b, cols_b = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if inner != inner_b or out.shape != (rows_a, cols_b) or a.dtype != b.dtype != out.dtype:
        raise ValueError(f"gemm: op(a) {rows_a}x{inner} @ op(b) {inner_b}x{cols_b} into out "
                         f"{out.shape} ({a.dtype}, {b.dtype}, {out.dtype})")
    rows, cols = out.shape
    tiles = ((cols + TILE - 1) // TILE) * ((rows + TILE - 1) // TILE)
    if rows and cols:
        launch(_GEMM[np.dtype(out.dtype)], min(tiles, MAX_TILE_BLOCKS), (TILE, TILE),
               (a, b, out, bool(trans_a), bool(trans_b), bool(accumulate), out.dtype.type(0)),
               outputs=(2,))


def bias_add(y, b):
    """y (R, F) += b (F,), in place."""
    launch(_bias_add, blocks(y.size), THREADS, (y, b), outputs=(0,))


def column_sum(dy, out):
    """out (F,) = the sum of dy (R, F) over its rows (accumulated in float64)."""
    if len(out):
        launch(_column_sum, len(out), THREADS, (dy, out), outputs=(1,))
