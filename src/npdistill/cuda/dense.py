"""Dense algebra on the GPU: a register-tiled shared-memory GEMM (split over its inner
dimension when the output is small), bias add and column sums (the specification:
kernels/dense.py)."""
import numpy as np
from numba import cuda, float32, float64

from ._launch import SIMULATED, THREADS, block_sum, blocks, launch

# A TILE x TILE block of threads computes a block x block tile of the output (block = TILE *
# work), each thread a work x work grid of it held in registers (rows ty + TILE * i, columns
# tx + TILE * j), from DEPTH-deep slices of op(a) and op(b) staged in shared memory: per inner
# step a thread reads 2 * work shared values for work * work multiply-adds (with one output
# per thread, 2 reads per multiply-add bound the kernel). The simulator runs every thread as
# a Python thread, started anew at each launch: there blocks of 4 x 4 threads compute the
# same 16 x 16 tiles as on a GPU's 16 x 16 threads with work = 1, at a fraction of the cost.
TILE = 4 if SIMULATED else 16
DEPTH = 16
WORK = 4
MAX_TILE_BLOCKS = 2 if SIMULATED else 65535
# Split-K: an output of few tiles with a long inner dimension (a convolution's weight
# gradient: 32 x 9 values summed over 86,528 rows at batch 128) would keep a handful of
# blocks busy for the whole sum. Its inner range is split over about SPLIT_TARGET blocks
# (two per multiprocessor of an H100), each at least MIN_SPLIT_DEPTH deep, and a second
# kernel adds the partial products in split order (deterministic: no atomics).
SPLIT_TARGET = 264
MIN_SPLIT_DEPTH = 256


@cuda.jit(device=True, inline="always")
def _stage(tile, src, inner_last, idx, block, k0, k_end, start, extent, zero):
    """Thread ``idx``'s element of a GEMM operand's DEPTH x block slice: tile[k, m] = the
    operand's (start + m, k0 + k) entry (zero outside it), src being (extent, inner) when
    ``inner_last`` else (inner, extent). Neighbouring threads read neighbouring addresses."""
    if inner_last:
        k, m = idx % DEPTH, idx // DEPTH
        ok = k0 + k < k_end and start + m < extent
        tile[k, m] = src[start + m, k0 + k] if ok else zero
    else:
        m, k = idx % block, idx // block
        ok = k0 + k < k_end and start + m < extent
        tile[k, m] = src[k0 + k, start + m] if ok else zero


def _make_gemm(element, work):
    block = TILE * work
    padded = block + 1          # shared rows one longer: fewer bank conflicts
    loads = DEPTH * block // (TILE * TILE)      # elements a thread stages per operand and step

    @cuda.jit
    def gemm(a, b, out, trans_a, trans_b, accumulate, zero, k_chunk):
        # out (S, rows, cols): out[s] = op(a)[:, ks] @ op(b)[ks, :] over the inner range ks of
        # split s = blockIdx.y (k_chunk wide); with one split and ``accumulate``, out[0] += it
        tile_a = cuda.shared.array((DEPTH, padded), element)     # [k, m] = op(a)[row0 + m, k]
        tile_b = cuda.shared.array((DEPTH, padded), element)     # [k, n] = op(b)[k, col0 + n]
        acc = cuda.local.array((work, work), element)
        ra = cuda.local.array(work, element)
        rb = cuda.local.array(work, element)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TILE + tx
        split = cuda.blockIdx.y
        rows, cols = out.shape[1], out.shape[2]
        inner = a.shape[0] if trans_a else a.shape[1]
        k_begin = split * k_chunk
        k_end = min(inner, k_begin + k_chunk)
        tiles_across = (cols + block - 1) // block
        n_tiles = tiles_across * ((rows + block - 1) // block)
        for tile in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):   # grid-stride over tiles
            row0 = (tile // tiles_across) * block
            col0 = (tile % tiles_across) * block
            for i in range(work):
                for j in range(work):
                    acc[i, j] = zero
            for k0 in range(k_begin, k_end, DEPTH):
                for e in range(loads):
                    idx = tid + e * TILE * TILE
                    _stage(tile_a, a, not trans_a, idx, block, k0, k_end, row0, rows, zero)
                    _stage(tile_b, b, trans_b, idx, block, k0, k_end, col0, cols, zero)
                cuda.syncthreads()
                for kk in range(DEPTH):
                    for i in range(work):
                        ra[i] = tile_a[kk, ty + TILE * i]
                    for j in range(work):
                        rb[j] = tile_b[kk, tx + TILE * j]
                    for i in range(work):
                        for j in range(work):
                            acc[i, j] += ra[i] * rb[j]
                cuda.syncthreads()
            for i in range(work):
                row = row0 + ty + TILE * i
                for j in range(work):
                    col = col0 + tx + TILE * j
                    if row < rows and col < cols:
                        if accumulate:
                            out[0, row, col] += acc[i, j]
                        else:
                            out[split, row, col] = acc[i, j]
    return gemm


_GEMM = {(np.dtype(dtype), work): _make_gemm(element, work)
         for dtype, element in ((np.float32, float32), (np.float64, float64)) for work in (1, 4)}


@cuda.jit
def _sum_splits(partial, out, accumulate):
    splits, rows, cols = partial.shape
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        row, col = idx // cols, idx % cols
        total = partial[0, row, col]
        for s in range(1, splits):                  # in split order: the same sum every run
            total += partial[s, row, col]
        if accumulate:
            out[row, col] += total
        else:
            out[row, col] = total


@cuda.jit
def _bias_add(y, b):
    f = b.shape[0]
    for idx in range(cuda.grid(1), y.shape[0] * f, cuda.gridsize(1)):
        y[idx // f, idx % f] += b[idx % f]


@cuda.jit
def _column_sum(dy, partial):
    # block (column, part): the part's rows (a grid stride over the parts), then a tree in
    # shared memory; partial (parts, F) in float64
    col, part = cuda.blockIdx.x, cuda.blockIdx.y
    tid = cuda.threadIdx.x
    shared = cuda.shared.array(THREADS, float64)
    total = 0.0
    for r in range(part * cuda.blockDim.x + tid, dy.shape[0], cuda.blockDim.x * cuda.gridDim.y):
        total += dy[r, col]
    total = block_sum(shared, total)
    if tid == 0:
        partial[part, col] = total


@cuda.jit
def _sum_parts(partial, out):
    for col in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        total = 0.0
        for p in range(partial.shape[0]):           # in part order: the same sum every run
            total += partial[p, col]
        out[col] = total


_scratch = {}


def _scratch_array(shape, dtype):
    """A device array of ``shape`` in this module's scratch memory for ``dtype``: kernels run
    in order on the default stream, so one scratch serves every call in turn."""
    size = int(np.prod(shape))
    buf = _scratch.get(np.dtype(dtype))
    if buf is None or buf.size < size:
        buf = _scratch[np.dtype(dtype)] = cuda.device_array(max(size, 1), dtype)
    return buf[:size].reshape(shape)


def split_count(tiles, inner):
    """Splits of the inner dimension for an output of ``tiles`` tiles (1: none)."""
    if tiles >= SPLIT_TARGET or inner < 2 * MIN_SPLIT_DEPTH:
        return 1
    return min(-(-SPLIT_TARGET // tiles), inner // MIN_SPLIT_DEPTH)


def gemm(a, b, out, trans_a=False, trans_b=False, accumulate=False, splits=None, work=WORK):
    """out = op(a) @ op(b) (or out += ... when ``accumulate``); op transposes when asked.

    splits: how many blocks share the inner dimension (None: chosen by split_count);
    work: outputs per thread along each side of a tile (1 or 4).
    """
    rows_a, inner = (a.shape[1], a.shape[0]) if trans_a else a.shape
    inner_b, cols_b = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if inner != inner_b or out.shape != (rows_a, cols_b) or a.dtype != b.dtype != out.dtype:
        raise ValueError(f"gemm: op(a) {rows_a}x{inner} @ op(b) {inner_b}x{cols_b} into out "
                         f"{out.shape} ({a.dtype}, {b.dtype}, {out.dtype})")
    rows, cols = out.shape
    if not (rows and cols):
        return
    if work not in (1, 4):
        raise ValueError(f"gemm: work must be 1 or 4, got {work!r}")
    block = TILE * work
    tiles = ((cols + block - 1) // block) * ((rows + block - 1) // block)
    if splits is None:
        splits = split_count(tiles, inner)
    if not isinstance(splits, (int, np.integer)) or isinstance(splits, bool) or splits < 1:
        raise ValueError(f"gemm: splits must be a positive integer, got {splits!r}")
    k_chunk = -(-max(inner, 1) // int(splits))
    k_chunk = -(-k_chunk // DEPTH) * DEPTH                  # whole DEPTH steps per split
    splits = max(1, -(-inner // k_chunk))                   # and no split left empty
    kernel, zero = _GEMM[np.dtype(out.dtype), work], out.dtype.type(0)
    grid = (min(tiles, MAX_TILE_BLOCKS), splits)
    if splits == 1:
        launch(kernel, grid, (TILE, TILE), (a, b, out.reshape(1, rows, cols), bool(trans_a),
                                            bool(trans_b), bool(accumulate), zero, k_chunk),
               outputs=(2,))
        return
    partial = _scratch_array((splits, rows, cols), out.dtype)
    launch(kernel, grid, (TILE, TILE), (a, b, partial, bool(trans_a), bool(trans_b), False, zero,
                                        k_chunk))
    launch(_sum_splits, blocks(rows * cols), THREADS, (partial, out, bool(accumulate)),
           outputs=(1,))


def bias_add(y, b):
    """y (R, F) += b (F,), in place."""
    launch(_bias_add, blocks(y.size), THREADS, (y, b), outputs=(0,))


def column_sum(dy, out, parts=None):
    """out (F,) = the sum of dy (R, F) over its rows (accumulated in float64).

    parts: how many blocks share a column's rows (None: about 4,096 rows each, at most 64).
    """
    if not len(out):
        return
    if parts is None:
        parts = min(64, max(1, len(dy) // (THREADS * 16)))
    partial = _scratch_array((parts, len(out)), np.float64)
    launch(_column_sum, (len(out), parts), THREADS, (dy, partial))
    launch(_sum_parts, blocks(len(out)), THREADS, (partial, out), outputs=(1,))
