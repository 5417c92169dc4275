"""One GEMM kernel for every product of the GPU network, with its operands read through
views and its result written through an epilogue: a convolution, its input gradient and
its weight gradient are each one launch, bias, ReLU, dropout, the backward's masks and
the max-pool's scatter included.

The product is out = op_a @ op_b, op_a a ``rows x inner`` and op_b an ``inner x cols``
*logical* matrix: a view says how its element (i, j) is read from the array behind it,
so that no im2col matrix, transposed copy or column of ones is ever written:

- ``MAT`` / ``MAT_T``: a matrix, or its transpose;
- ``AUG`` / ``AUG_T``: a matrix with a column of ones appended (so that a product with
  a weight matrix whose last row, or column, is the bias adds the bias), or its transpose;
- ``COLS``: the im2col matrix of channels-last images x (N, H, W, C), columns in
  (a, b, c) order as kernels/reference/conv.py, with the column of ones appended: a convolution's
  forward is COLS @ W_aug^T and its weight gradient dy^T @ COLS (bias gradient included);
- ``DCOLS`` and ``WFLIP``: the convolution's input gradient as one product (the
  transposed convolution): dx[(n, y, x), c] = sum over (a, b, f) of
  dy[n, y + top - a, x + left - b, f] * W[f, (a, b, c)], where kernels/reference/conv.py's col2im
  sums dy @ W over the (a, b) shifts; the same sum in another order.

Epilogues: ``STORE``, ``ACCUM`` (out +=), ``ACT`` (ReLU and inverted dropout, the mask
kept), ``MASK`` (times the ReLU / dropout derivative of the layer that produced this
product's input: the backward's elementwise steps) and ``SCATTER`` (a max-pool's
backward: the gradient of a window's maximum goes to its argmax, zeros to the rest,
times that derivative). The NumPy references they are tested against are the CPU
path's: kernels.im2col / col2im, nn.layers' ReLU, Dropout and MaxPool2D.

Split-K: an output of few tiles with a long inner dimension (a weight gradient sums over
every pixel of the batch) has its inner range split over blocks; each writes its partial
product, and the last block of a tile to finish (an atomic ticket) adds the partials in
split order and applies the epilogue: one launch, the same sum on every run.
"""
import numpy as np
from numba import cuda, float32, float64, int32

from ._launch import SIMULATED, launch

# Tiles as dense.py's GEMM always had them: a TILE x TILE block of threads computes a
# block x block tile (block = TILE * work), from DEPTH-deep slices staged in shared memory.
TILE = 4 if SIMULATED else 16
DEPTH = 16
WORK = 4
MAX_TILE_BLOCKS = 2 if SIMULATED else 65535
SPLIT_TARGET = 264
MIN_SPLIT_DEPTH = 256

MAT, MAT_T, AUG, AUG_T, COLS, DCOLS, WFLIP = range(7)
STORE, ACCUM, ACT, MASK, SCATTER = range(5)


# ---- views: element (i, j) of a logical matrix; g holds the geometry (kh, kw, top, left,
# oh or H, ow or W) of the convolution views, zero and one are of the arrays' dtype.

@cuda.jit(device=True, inline="always")
def _v_mat(src, g, i, j, zero, one):
    return src[i, j]


@cuda.jit(device=True, inline="always")
def _v_mat_t(src, g, i, j, zero, one):
    return src[j, i]


@cuda.jit(device=True, inline="always")
def _v_aug(src, g, i, j, zero, one):
    return src[i, j] if j < src.shape[1] else one


@cuda.jit(device=True, inline="always")
def _v_aug_t(src, g, i, j, zero, one):
    return src[j, i] if i < src.shape[1] else one


@cuda.jit(device=True, inline="always")
def _v_cols(x, g, i, j, zero, one):
    kh, kw, top, left, oh, ow = g[0], g[1], g[2], g[3], g[4], g[5]
    c = x.shape[3]
    if j >= kh * kw * c:
        return one
    n = i // (oh * ow)
    y = (i // ow) % oh + j // (kw * c) - top
    xx = i % ow + (j // c) % kw - left
    if 0 <= y < x.shape[1] and 0 <= xx < x.shape[2]:
        return x[n, y, xx, j % c]
    return zero


@cuda.jit(device=True, inline="always")
def _v_dcols(dy, g, i, j, zero, one):
    kw, top, left, h, w = g[1], g[2], g[3], g[4], g[5]
    f = dy.shape[3]
    n = i // (h * w)
    oi = (i // w) % h + top - j // (kw * f)
    oj = i % w + left - (j // f) % kw
    if 0 <= oi < dy.shape[1] and 0 <= oj < dy.shape[2]:
        return dy[n, oi, oj, j % f]
    return zero


@cuda.jit(device=True, inline="always")
def _v_wflip(W, g, i, j, zero, one):
    kh, kw = g[0], g[1]
    f = W.shape[0]
    c = (W.shape[1] - 1) // (kh * kw)
    return W[i % f, ((i // (kw * f)) * kw + (i // f) % kw) * c + j]


_VIEWS = {MAT: _v_mat, MAT_T: _v_mat_t, AUG: _v_aug, AUG_T: _v_aug_t, COLS: _v_cols,
          DCOLS: _v_dcols, WFLIP: _v_wflip}
# views whose inner index runs along the array's last axis: their staging threads walk it
_INNER_FAST_AS_A = {MAT, AUG, COLS, DCOLS}
_INNER_FAST_AS_B = {MAT_T, AUG_T}


# ---- the derivative of an activation stage (ReLU then dropout, either optional) at one
# element of its output ``act``: what its backward multiplies the incoming gradient by.

@cuda.jit(device=True, inline="always")
def activation_derivative(act, mask, i, relu, dropout, zero, one):
    """act and mask flat; relu and dropout: what the stage applied. The ReLU's derivative
    is read from its output (positive where its input was), the dropout's is its mask."""
    f = one
    if relu and not act[i] > zero:
        f = zero
    if dropout:
        f = f * mask[i]
    return f


# ---- epilogues: write the product's value v of element (r, c).

@cuda.jit(device=True, inline="always")
def _e_store(out, e1, e2, e3, flags, vals, r, c, v, zero, one):
    out[r, c] = v


@cuda.jit(device=True, inline="always")
def _e_accum(out, e1, e2, e3, flags, vals, r, c, v, zero, one):
    out[r, c] += v


@cuda.jit(device=True, inline="always")
def _e_act(out, u, mask, e3, flags, vals, r, c, v, zero, one):
    # flags (relu, dropout), vals (rate, 1 / (1 - rate)); u, mask (rows, cols)
    if flags[0]:
        v = zero if v <= zero else v            # NaN stays NaN, as the CPU layer's
    if flags[1]:
        keep = vals[1] if u[r, c] >= vals[0] else zero
        mask[r, c] = keep
        v = v * keep
    out[r, c] = v


@cuda.jit(device=True, inline="always")
def _e_mask(out, act, mask, e3, flags, vals, r, c, v, zero, one):
    # act, mask flat: the producing stage's output; S stacked seeds share it
    i = (r * out.shape[1] + c) % act.size
    out[r, c] = v * activation_derivative(act, mask, i, flags[0], flags[1], zero, one)


@cuda.jit(device=True, inline="always")
def scatter_to_window(out, n, i, j, c, v, argmax, act, mask, flags, zero, one):
    """The gradient v of pooled element (i, j, c) of row n of out (S * N, H, W, C), the
    pool's input gradient, to its window's argmax (zeros to the rest), times the
    derivative (flags: relu, dropout, pool size) of the stage whose output act and mask
    (flat, N * H * W * C) were pooled; S stacked seeds share one forward's argmax."""
    size = flags[2]
    nf = n % argmax.shape[0]
    where = argmax[nf, i, j, c]
    h, w, ch = out.shape[1], out.shape[2], out.shape[3]
    for a in range(size):
        for b in range(size):
            y, xx = i * size + a, j * size + b
            value = zero
            if a * size + b == where:
                at = ((nf * h + y) * w + xx) * ch + c
                value = v * activation_derivative(act, mask, at, flags[0], flags[1], zero, one)
            out[n, y, xx, c] = value


@cuda.jit(device=True, inline="always")
def _e_scatter(out, act, mask, argmax, flags, vals, r, c, v, zero, one):
    # r runs over the pooled map (n, i, j) of argmax (N, oh, ow, C)
    oh, ow = argmax.shape[1], argmax.shape[2]
    scatter_to_window(out, r // (oh * ow), (r // ow) % oh, r % ow, c, v, argmax, act, mask,
                      flags, zero, one)


_EPILOGUES = {STORE: _e_store, ACCUM: _e_accum, ACT: _e_act, MASK: _e_mask, SCATTER: _e_scatter}


def _make_stage(get, inner_fast, block, is_a):
    """Thread ``idx``'s element of an operand's DEPTH x block slice: tile[k, m] = op_a's
    (start + m, k0 + k) entry (``is_a``) or op_b's (k0 + k, start + m), zero outside it.
    Neighbouring threads walk the array's last axis (``inner_fast``: the inner index)."""
    @cuda.jit(device=True, inline="always")
    def stage(tile, src, g, idx, k0, k_end, start, extent, zero, one):
        if inner_fast:
            k, m = idx % DEPTH, idx // DEPTH
        else:
            m, k = idx % block, idx // block
        value = zero
        if k0 + k < k_end and start + m < extent:
            if is_a:
                value = get(src, g, start + m, k0 + k, zero, one)
            else:
                value = get(src, g, k0 + k, start + m, zero, one)
        tile[k, m] = value
    return stage


def _make_gemm(view_a, view_b, epilogue, element, work):
    block = TILE * work
    padded = block + 1
    loads = DEPTH * block // (TILE * TILE)
    stage_a = _make_stage(_VIEWS[view_a], view_a in _INNER_FAST_AS_A, block, True)
    stage_b = _make_stage(_VIEWS[view_b], view_b in _INNER_FAST_AS_B, block, False)
    write = _EPILOGUES[epilogue]

    def gemm(a, ga, b, gb, rows, inner, cols, k_chunk, partial, tickets, out, e1, e2, e3,
             flags, vals, zero, one):
        tile_a = cuda.shared.array((DEPTH, padded), element)     # [k, m] = op_a[row0 + m, k]
        tile_b = cuda.shared.array((DEPTH, padded), element)     # [k, n] = op_b[k, col0 + n]
        last = cuda.shared.array(1, int32)
        acc = cuda.local.array((work, work), element)
        ra = cuda.local.array(work, element)
        rb = cuda.local.array(work, element)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TILE + tx
        split, splits = cuda.blockIdx.y, cuda.gridDim.y
        k_begin = split * k_chunk
        k_end = min(inner, k_begin + k_chunk)
        across = (cols + block - 1) // block
        n_tiles = across * ((rows + block - 1) // block)
        for tile in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):   # grid-stride over tiles
            row0 = (tile // across) * block
            col0 = (tile % across) * block
            for i in range(work):
                for j in range(work):
                    acc[i, j] = zero
            for k0 in range(k_begin, k_end, DEPTH):
                for e in range(loads):
                    idx = tid + e * TILE * TILE
                    stage_a(tile_a, a, ga, idx, k0, k_end, row0, rows, zero, one)
                    stage_b(tile_b, b, gb, idx, k0, k_end, col0, cols, zero, one)
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
            if splits == 1:
                for i in range(work):
                    for j in range(work):
                        row, col = row0 + ty + TILE * i, col0 + tx + TILE * j
                        if row < rows and col < cols:
                            write(out, e1, e2, e3, flags, vals, row, col, acc[i, j], zero, one)
                continue
            for i in range(work):
                for j in range(work):
                    row, col = row0 + ty + TILE * i, col0 + tx + TILE * j
                    if row < rows and col < cols:
                        partial[split, row, col] = acc[i, j]
            cuda.threadfence()                  # the partials visible before the ticket
            cuda.syncthreads()
            if tid == 0:
                last[0] = 1 if cuda.atomic.add(tickets, tile, 1) == splits - 1 else 0
            cuda.syncthreads()
            if last[0]:                         # every split of this tile has written
                cuda.threadfence()
                for i in range(work):
                    for j in range(work):
                        row, col = row0 + ty + TILE * i, col0 + tx + TILE * j
                        if row < rows and col < cols:
                            total = partial[0, row, col]
                            for s in range(1, splits):      # in split order
                                total += partial[s, row, col]
                            write(out, e1, e2, e3, flags, vals, row, col, total, zero, one)
                if tid == 0:
                    tickets[tile] = 0           # ready for the next product
            cuda.syncthreads()
    # what tells this kernel apart from the factory's others (tests/cuda's compile test)
    gemm.npdistill_key = (view_a, view_b, epilogue, str(np.dtype(element.name)), work)
    return cuda.jit(gemm)


_KERNELS: dict = {}


def kernel(view_a, view_b, epilogue, dtype, work):
    """The compiled GEMM for these views, epilogue, dtype and outputs per thread (cached)."""
    key = (view_a, view_b, epilogue, np.dtype(dtype), work)
    if key not in _KERNELS:
        element = float32 if np.dtype(dtype) == np.float32 else float64
        _KERNELS[key] = _make_gemm(view_a, view_b, epilogue, element, work)
    return _KERNELS[key]


def split_count(tiles, inner):
    """Splits of the inner dimension for an output of ``tiles`` tiles (1: none)."""
    if tiles >= SPLIT_TARGET or inner < 2 * MIN_SPLIT_DEPTH:
        return 1
    return min(-(-SPLIT_TARGET // tiles), inner // MIN_SPLIT_DEPTH)


_scratch: dict = {}


def _scratch_array(name, shape, dtype, fill=None):
    """A device array of ``shape`` from this module's scratch (kernels run in order on one
    stream, so one scratch serves every product in turn); ``fill``: its value when new."""
    size = int(np.prod(shape))
    key = (name, np.dtype(dtype))
    buf = _scratch.get(key)
    if buf is None or buf.size < size:
        host = np.zeros(max(size, 1), dtype) if fill is not None else None
        buf = _scratch[key] = (cuda.to_device(host) if host is not None
                               else cuda.device_array(max(size, 1), dtype))
    return buf[:size].reshape(shape)


_NO_GEOMETRY = (0, 0, 0, 0, 0, 0)
# the dimensions of the epilogues' extra arrays (a stand-in fills those a product leaves out)
_EXTRA_NDIM = {STORE: (1, 1, 1), ACCUM: (1, 1, 1), ACT: (2, 2, 1), MASK: (1, 1, 1),
               SCATTER: (1, 1, 4)}


def product(view_a, a, view_b, b, rows, inner, cols, out, *, epilogue=STORE, extra=(),
            flags=(0, 0, 0), vals=(0.0, 0.0), ga=_NO_GEOMETRY, gb=_NO_GEOMETRY, splits=None,
            work=WORK):
    """out <- epilogue(op_a @ op_b) in one launch (see the module's docstring).

    extra : up to three arrays the epilogue reads or writes (ACT: u, mask; MASK: act,
    mask; SCATTER: act, mask, argmax); splits: of the inner dimension (None: chosen by
    split_count); work: outputs per thread along each side of a tile (1 or 4).
    """
    if not (rows and cols):
        return
    if work not in (1, 4):
        raise ValueError(f"work must be 1 or 4, got {work!r}")
    dtype = out.dtype
    block = TILE * work
    tiles = ((cols + block - 1) // block) * ((rows + block - 1) // block)
    if splits is None:
        splits = split_count(tiles, inner)
    if not isinstance(splits, (int, np.integer)) or isinstance(splits, bool) or splits < 1:
        raise ValueError(f"splits must be a positive integer, got {splits!r}")
    k_chunk = -(-max(inner, 1) // int(splits))
    k_chunk = -(-k_chunk // DEPTH) * DEPTH                  # whole DEPTH steps per split
    splits = max(1, -(-inner // k_chunk))                   # and no split left empty
    grid = (min(tiles, MAX_TILE_BLOCKS), splits)
    partial = _scratch_array("partial", (splits, rows, cols) if splits > 1 else (1, 1, 1), dtype)
    tickets = _scratch_array("tickets", (max(tiles, 1),), np.int32, fill=0)
    extra = tuple(extra) + (None,) * (3 - len(extra))
    extra = tuple(_scratch_array(f"dummy{ndim}", (1,) * ndim, dtype) if e is None else e
                  for e, ndim in zip(extra, _EXTRA_NDIM[epilogue]))
    t = dtype.type
    launch(kernel(view_a, view_b, epilogue, dtype, work), grid, (TILE, TILE),
           (a, tuple(int(v) for v in ga), b, tuple(int(v) for v in gb), int(rows), int(inner),
            int(cols), int(k_chunk), partial, tickets, out, *extra,
            tuple(int(f) for f in flags), tuple(float(v) for v in vals), t(0), t(1)),
           outputs=(10, 11, 12))
