"""The stages a DeviceModel runs (cuda/device_model.py): device buffers and passes.

- ``Affine``: a Conv2D or Dense with the ReLU and Dropout after it, one product of
  cuda/fused.py each way (forward: bias, ReLU and dropout in the epilogue; weight gradient:
  bias gradient included; input gradient: the backward of the stage before it -- ReLU
  mask, dropout mask or max-pool scatter -- in the epilogue);
- ``Head``: the Dense layers at the net's end, with the MaxPool2D and Flatten before them
  (cuda/head.py): one launch forward, the loss or an attack's seeds included, one backward;
- ``Alone``: any other layer, by its kernel of cuda/elementwise.py or cuda/pool.py.

Activations are channels-last (N, H, W, C) device arrays; ``Affine.bind`` and ``Head.bind``
hand a stage its parameters' part of the flat buffers (cuda/parameters.py).
"""
import numpy as np
from numba import cuda

from .. import kernels
from ..nn.layers import Conv2D, Dropout, Flatten, MaxPool2D, Normalize, ReLU
from . import elementwise, fused, head, pool


def device_empty(shape, dtype):
    return cuda.device_array(tuple(int(s) for s in shape), dtype=dtype)


def device_zeros(shape, dtype):
    return cuda.to_device(np.zeros(tuple(int(s) for s in shape), dtype))


class _Buffers:
    """A stage's outputs and gradients live in device arrays it keeps from pass to pass
    (allocated again only when a shape changes): an array a pass returns is overwritten by
    the stage's next pass of that kind. Numba's device_array is a cudaMalloc each time;
    a pass makes none."""
    param_layers = ()
    activation = False

    def _uniforms(self, host):
        """Dropout's uniforms (float64, drawn on the host) in the stage's device buffer for
        them: copied in, not allocated, at every training step."""
        buf = self._buffer("_u", host.shape, np.float64)
        buf.copy_to_device(host)
        return buf

    def _buffer(self, attr, shape, dtype, zeros=False):
        shape = tuple(int(n) for n in shape)
        buf = self.__dict__.get(attr)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = (device_zeros if zeros else device_empty)(shape, dtype)
            setattr(self, attr, buf)
        return buf


def aug_shape(layer):
    """The shape of a layer's parameters in the flat buffer: a convolution's [W | b]
    (F, k*k*C + 1), a Dense layer's [W; b] (in + 1, out)."""
    if isinstance(layer, Conv2D):
        k = layer.kernel_size
        return (layer.out_channels, k * k * layer.in_channels + 1)
    return (layer.in_features + 1, layer.out_features)


def _draw_uniforms(layer, shape):
    """Dropout ``layer``'s uniforms for an output of device shape ``shape``: the host
    layer's draw, in its logical (NCHW) shape, moved to the device's channels-last order."""
    logical = shape if len(shape) == 2 else (shape[0], shape[3], shape[1], shape[2])
    u = layer.rng.random(logical, dtype=np.float64)
    return np.ascontiguousarray(u.transpose(0, 2, 3, 1)) if len(shape) == 4 else u


class Affine(_Buffers):
    """A Conv2D or Dense layer with the ReLU and Dropout that follow it (either optional)."""

    def __init__(self, layer, relu, dropout):
        self.layer, self.relu, self.dropout = layer, relu, dropout
        self.param_layers = (layer,)
        self.activation = relu is not None or dropout is not None
        self.conv = isinstance(layer, Conv2D)
        self.mask = None

    def bind(self, aug, grad_aug):
        """Take the layer's views of the flat parameter and gradient buffers."""
        self.W, self.dW = aug, grad_aug

    def forward(self, x, training):
        self.x = x
        dropping = training and self.dropout is not None and self.dropout.rate > 0.0
        if self.conv:
            n, h, w, c = x.shape
            top, bottom, left, right = self.layer.pads
            k = self.layer.kernel_size
            oh = kernels.conv_output_size(h, k, top, bottom)
            ow = kernels.conv_output_size(w, k, left, right)
            rows, cols, inner = n * oh * ow, self.layer.out_channels, self.W.shape[1]
            self.geometry = (k, k, top, left, oh, ow)
            shape = (n, oh, ow, cols)
            views = dict(view_a=fused.COLS, a=x, ga=self.geometry, view_b=fused.MAT_T, b=self.W)
        else:
            rows, cols, inner = len(x), self.layer.out_features, self.W.shape[0]
            shape = (rows, cols)
            views = dict(view_a=fused.AUG, a=x, view_b=fused.MAT, b=self.W)
        y = self._buffer("_y", shape, x.dtype)
        extra, vals = (), (0.0, 0.0)
        if dropping:
            rate = self.dropout.rate
            u = self._uniforms(_draw_uniforms(self.dropout, shape).reshape(rows, cols))
            self.mask = self._buffer("_mask", shape, x.dtype)
            extra = (u, self.mask.reshape(rows, cols))
            t = x.dtype.type
            vals = (float(rate), float(t(1) / t(1.0 - rate)))
        fused.product(rows=rows, inner=inner, cols=cols, out=y.reshape(rows, cols),
                      epilogue=fused.ACT, extra=extra, vals=vals,
                      flags=(self.relu is not None, dropping, 0), **views)
        self.dropping = dropping
        self.y = y
        return y

    def derivative_flags(self):
        """(relu, dropout): what the backward of this stage's activation multiplies by."""
        return (self.relu is not None, self.dropping)

    def derivative_arrays(self):
        """This stage's output and dropout mask, flat (what the derivative reads)."""
        mask = self.mask if self.dropping else self.y
        return self.y.reshape(self.y.size), mask.reshape(mask.size)

    def activation_backward(self, dy):
        """dy (post-activation) times the activation's derivative: a launch of its own,
        for the few nets whose next layer cannot take it into its epilogue."""
        if not self.activation:
            return dy
        out = self._buffer("_dz", dy.shape, dy.dtype)
        act, mask = self.derivative_arrays()
        elementwise.activation_backward(dy, act, mask, *self.derivative_flags(), out)
        return out

    def backward(self, dy, param_grads, input_grad, before):
        """dy: the gradient of this stage's pre-activation output (the stage after it, or
        activation_backward, applied the derivative). ``before``: the stages before this
        one, nearest first, whose backward the input gradient's epilogue may take in.
        Returns (dx, stages taken in, whether dx is already a pre-activation gradient)."""
        n_rows = len(dy)
        if self.conv:
            F = self.layer.out_channels
            dy2 = dy.reshape(dy.size // F, F)
            if param_grads:
                fused.product(fused.MAT_T, dy2, fused.COLS, self.x, F, len(dy2), self.W.shape[1],
                              self.dW, gb=self.geometry)
        elif param_grads:
            fused.product(fused.AUG_T, self.x, fused.MAT, dy, self.W.shape[0], n_rows,
                          self.W.shape[1], self.dW)
        if not input_grad:
            return None, 0, False
        epilogue, extra, flags, taken, pre = _input_gradient_epilogue(before)
        if self.conv:
            k, _, top, left, _, _ = self.geometry
            _, h, w, c = self.x.shape                  # dy may stack S seeds: n_rows = S * N
            rows = n_rows * h * w
            if epilogue == fused.SCATTER:
                dx = before[0].stage.input_gradient_buffer(n_rows)
            else:
                dx = self._buffer("_dx", (n_rows, h, w, c), dy.dtype)
            fused.product(fused.DCOLS, dy, fused.WFLIP, self.W, rows, k * k * self.layer.out_channels,
                          c, _scatter_target(epilogue, dx, rows, c), epilogue=epilogue,
                          extra=extra, flags=flags, ga=(k, k, top, left, h, w), gb=(k, k, 0, 0, 0, 0))
        else:
            d_in = self.layer.in_features
            if epilogue == fused.SCATTER:           # a Dense layer's input is never pooled
                epilogue, extra, flags, taken, pre = fused.STORE, (), (0, 0, 0), 0, False
            dx = self._buffer("_dx", (n_rows, d_in), dy.dtype)
            fused.product(fused.MAT, dy, fused.MAT_T, self.W, n_rows, self.layer.out_features,
                          d_in, dx, epilogue=epilogue, extra=extra, flags=flags)
        return dx, taken, pre


def _scatter_target(epilogue, dx, rows, c):
    """The array the input gradient's epilogue writes: the pool's input map (4-D) for a
    scatter, else dx as the product's (rows, C) matrix."""
    return dx if epilogue == fused.SCATTER else dx.reshape(rows, c)


def _input_gradient_epilogue(before):
    """(epilogue, extra arrays, flags, stages taken in, pre) for an input gradient whose
    producer is before[0] (then before[1]): an activation stage's derivative (MASK; that
    stage then gets a pre-activation gradient: pre), a max-pool's scatter (SCATTER; the
    pool is taken in) with the derivative of the stage it pooled, or none (STORE)."""
    prev = before[0] if before else None
    if isinstance(prev, Affine) and prev.activation:
        act, mask = prev.derivative_arrays()
        return fused.MASK, (act, mask), (*prev.derivative_flags(), 0), 0, True
    pool_stage = getattr(prev, "stage", None)
    if isinstance(pool_stage, _MaxPool) and pool_stage.fits_scatter():
        prev = pool_stage
        pooled = before[1] if len(before) > 1 else None
        if isinstance(pooled, Affine) and pooled.activation:
            act, mask = pooled.derivative_arrays()
            return (fused.SCATTER, (act, mask, prev.argmax),
                    (*pooled.derivative_flags(), prev.size), 1, True)
        return fused.SCATTER, (None, None, prev.argmax), (0, 0, prev.size), 1, False
    return fused.STORE, (), (0, 0, 0), 0, False


class _ReLU(_Buffers):
    def __init__(self, layer):
        pass

    def forward(self, x, training):
        y = self._buffer("_y", x.shape, x.dtype)
        self.mask = self._buffer("_mask", x.shape, np.uint8)
        elementwise.relu_forward(x, y, self.mask)
        return y

    def backward(self, dy, param_grads, input_grad):
        dx = self._buffer("_dx", dy.shape, dy.dtype)
        elementwise.mask_backward(dy, self.mask, dx)
        return dx


class _MaxPool(_Buffers):
    def __init__(self, layer):
        self.size = layer.size

    def forward(self, x, training):
        n, h, w, c = x.shape
        self.x_shape, self.x_dtype = x.shape, x.dtype
        out = self._buffer("_y", (n, h // self.size, w // self.size, c), x.dtype)
        self.argmax = self._buffer("_argmax", out.shape, np.int64)
        pool.maxpool_forward(x, self.size, out, self.argmax)
        return out

    def backward(self, dy, param_grads, input_grad):
        dx = self._buffer("_dx", (len(dy),) + self.x_shape[1:], dy.dtype)
        pool.maxpool_backward(dy, self.argmax, self.size, dx)
        return dx

    def fits_scatter(self):
        """Whether the next stage's input gradient may scatter through this pool (its
        forward ran: the argmax is there)."""
        return self.__dict__.get("argmax") is not None

    def input_gradient_buffer(self, n):
        """The gradient of this pool's input for n images, as a scatter writes it: zeros
        where no window reaches (an odd row or column), which a scatter never writes."""
        return self._buffer("_dx_scatter", (n,) + self.x_shape[1:], self.x_dtype, zeros=True)


class _Flatten(_Buffers):
    def __init__(self, layer):
        pass

    def forward(self, x, training):
        self.x_shape = x.shape
        if x.ndim == 2:
            return x
        out = self._buffer("_y", (len(x), x.size // len(x)), x.dtype)
        elementwise.nhwc_to_flat(x, out)
        return out

    def backward(self, dy, param_grads, input_grad):
        if len(self.x_shape) == 2:
            return dy
        dx = self._buffer("_dx", (len(dy),) + self.x_shape[1:], dy.dtype)
        elementwise.flat_to_nhwc(dy, dx)
        return dx


class _Dropout(_Buffers):
    def __init__(self, layer):
        self.layer = layer

    def forward(self, x, training):
        self.mask = None
        if not training or self.layer.rate == 0.0:
            return x
        # the host layer's draw, in its logical (NCHW) shape, moved to the device's layout
        shape = x.shape if x.ndim == 2 else (x.shape[0], x.shape[3], x.shape[1], x.shape[2])
        u = self.layer.rng.random(shape, dtype=np.float64)
        if x.ndim == 4:
            u = np.ascontiguousarray(u.transpose(0, 2, 3, 1))
        y = self._buffer("_y", x.shape, x.dtype)
        self.mask = self._buffer("_mask", x.shape, x.dtype)
        elementwise.dropout_forward(x, cuda.to_device(u), self.layer.rate, y, self.mask)
        return y

    def backward(self, dy, param_grads, input_grad):
        if self.mask is None:
            return dy
        dx = self._buffer("_dx", dy.shape, dy.dtype)
        elementwise.mask_backward(dy, self.mask, dx)
        return dx


class _Normalize(_Buffers):
    def __init__(self, layer):
        self.layer = layer
        self._constants = {}

    def _moved(self, dtype):
        """(mean, 0, 1 / std) on the device in ``dtype``, uploaded once."""
        if dtype not in self._constants:
            mean, std = self.layer.mean, self.layer.std
            self._constants[dtype] = [cuda.to_device(np.asarray(v, dtype=dtype)) for v in
                                      (mean, [0.0], [1.0 / s for s in std])]
        return self._constants[dtype]

    def forward(self, x, training):
        mean, _, inverse = self._moved(x.dtype)
        y = self._buffer("_y", x.shape, x.dtype)
        elementwise.channel_affine(x, mean, inverse, y)
        return y

    def backward(self, dy, param_grads, input_grad):
        _, zero, inverse = self._moved(dy.dtype)
        dx = self._buffer("_dx", dy.shape, dy.dtype)
        elementwise.channel_affine(dy, zero, inverse, dx)
        return dx


_ALONE = {ReLU: _ReLU, MaxPool2D: _MaxPool, Flatten: _Flatten, Dropout: _Dropout,
          Normalize: _Normalize}


class Alone:
    """A layer that runs its own kernel, with the stages' backward signature."""
    param_layers = ()
    activation = False

    def __init__(self, layer):
        self.stage = _ALONE[type(layer)](layer)

    def forward(self, x, training):
        return self.stage.forward(x, training)

    def backward(self, dy, param_grads, input_grad, before):
        return self.stage.backward(dy, param_grads, input_grad), 0, False


class Head(_Buffers):
    """The net's last Dense layers (with their ReLU and Dropout), and the MaxPool2D and
    Flatten before the first of them: cuda/head.py's kernels."""

    def __init__(self, pool_size, chunks):
        self.size = pool_size                       # 0: no pooling or Flatten before
        self.chunks = chunks                        # [(Dense, ReLU or None, Dropout or None)]
        self.param_layers = tuple(dense for dense, _, _ in chunks)
        self.activation = False
        widths = [dense.out_features for dense, _, _ in chunks]
        self.offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        self.rates = np.array([[drop.rate if drop else 0.0,
                                1.0 / (1.0 - drop.rate) if drop else 0.0]
                               for _, _, drop in chunks], dtype=np.float64)

    def bind(self, flat_params, flat_grads, param_offsets):
        self.params, self.grads = flat_params, flat_grads
        self.param_offsets = param_offsets              # of each Dense layer's [W; b]
        self.rates_d = cuda.to_device(self.rates)
        self._tables = {}                               # (images, training) -> layer table

    def _table(self, n, training):
        """The layer table of head.py for n images (offsets in the activations' buffer)."""
        rows = []
        for (dense, relu, drop), offset, w_off in zip(self.chunks, self.offsets,
                                                      self.param_offsets):
            dropping = training and drop is not None and drop.rate > 0.0
            rows.append([w_off, dense.in_features, dense.out_features, offset * n,
                         relu is not None, dropping])
        return np.array(rows, dtype=np.int64)

    def forward(self, x, training, row=None):
        n, dtype = len(x), x.dtype
        self.n, self.training = n, training
        if x.ndim == 4:
            size = max(self.size, 1)
            _, h, w, c = x.shape
            pooled = (n, h // size, w // size, c)
            self.x0 = self._buffer("_x0", (n, c * pooled[1] * pooled[2]), dtype)
            self.argmax = self._buffer("_argmax", pooled, np.int64)
            self.x_shape, source, src = x.shape, head.NHWC, x
        else:
            self.x0, self.x_shape, source = x, x.shape, head.FLAT
            src = self.argmax = self._buffer("_argmax", (1, 1, 1, 1), np.int64)
        total = int(self.offsets[-1] + self.chunks[-1][0].out_features)
        self.acts = self._buffer("_acts", (n * total,), dtype)
        self.masks = self._buffer("_masks", (n * total,), dtype)
        key = (n, bool(training))
        if key not in self._tables:                 # on the device once per shape
            table = self._table(n, training)
            self._tables[key] = table, cuda.to_device(table)
        table, self.table = self._tables[key]
        u = self.masks
        if training and table[:, head.DROPOUT].any():
            draws = np.zeros(n * total)
            for (dense, _, drop), offset, dropping in zip(self.chunks, self.offsets,
                                                          table[:, head.DROPOUT]):
                if dropping:
                    width = dense.out_features
                    draws[offset * n:(offset + width) * n] = _draw_uniforms(drop, (n, width)).ravel()
            u = self._uniforms(draws)
        k = self.chunks[-1][0].out_features
        last = int(self.offsets[-1]) * n
        logits = self.acts[last:last + n * k].reshape(n, k)
        kind, args, vals = row if row is not None else (head.NONE, (), ())
        head.forward(source, kind, src, max(self.size, 1), self.x0, self.argmax, self.params,
                     self.table, self.rates_d, self.acts, self.masks, u, logits,
                     args, vals)
        return logits

    def backward(self, dz, param_grads, input_grad, before):
        n_rows, dtype = len(dz), dz.dtype
        total = len(self.acts) // self.n
        deltas = self._buffer("_deltas", (n_rows * total,), dtype)
        prev = before[0] if before else None
        fuse = len(self.x_shape) == 4 and isinstance(prev, Affine) and prev.activation
        if len(self.x_shape) == 4:
            target, argmax = head.NHWC, self.argmax
            dx = self._buffer("_dx", (n_rows,) + self.x_shape[1:], dtype, zeros=True)
        else:
            target, argmax = head.FLAT, self.argmax
            dx = self._buffer("_dx", (n_rows, self.x_shape[1]), dtype)
        if fuse:
            act_in, mask_in = prev.derivative_arrays()
            flags = (*prev.derivative_flags(), max(self.size, 1), input_grad)
        else:
            act_in = mask_in = self.masks
            flags = (0, 0, max(self.size, 1), input_grad)
        head.backward(target, dz, self.params, self.table, self.acts, self.masks, deltas,
                      self.n, dx, argmax, act_in, mask_in, flags)
        if param_grads:
            n = self.n
            for i, ((dense, _, _), offset, w_off) in enumerate(zip(self.chunks, self.offsets,
                                                                  self.param_offsets)):
                d_in, d_out = dense.in_features, dense.out_features
                x = self.x0 if i == 0 else \
                    self.acts[self.offsets[i - 1] * n:(self.offsets[i - 1] + d_in) * n].reshape(n, d_in)
                delta = deltas[offset * n:(offset + d_out) * n].reshape(n, d_out)
                dW = self.grads[w_off:w_off + (d_in + 1) * d_out].reshape(d_in + 1, d_out)
                fused.product(fused.AUG_T, x, fused.MAT, delta, d_in + 1, n, d_out, dW)
        if not input_grad:
            return None, 0, False
        return dx, 0, fuse
