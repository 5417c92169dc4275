"""A Sequential on the GPU: its parameters, activations and gradients in device arrays.

``DeviceModel(model)`` mirrors a Sequential of Normalize, Conv2D, ReLU, MaxPool2D,
Flatten, Dense and Dropout layers with the kernels of this package. Activations are
channels-last (N, H, W, C) device arrays, as the CPU kernels' memory; a
convolution's weights live as the (F, k*k*C) matrix its GEMM multiplies, and
``to_host`` writes them back in the host layer's (F, C, k, k) layout. Flatten
reorders to the host's NCHW order, so that Dense weights are the host's.

Its passes take and return device arrays; ``cuda.passes.DevicePasses`` puts the
``Passes`` interface (NumPy in and out) on it, ``cuda.trainer.DeviceTrainer`` runs
train()'s epochs with it.
"""
import numpy as np
from numba import cuda

from .. import kernels
from ..nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Normalize, ReLU
from . import conv, dense, elementwise, pool


def device_empty(shape, dtype):
    return cuda.device_array(tuple(int(s) for s in shape), dtype=dtype)


class _Buffers:
    """A layer's outputs and gradients live in device arrays it keeps from pass to pass
    (allocated again only when a shape changes): an array a pass returns is overwritten by
    the layer's next pass of that kind. Numba's device_array is a cudaMalloc each time;
    a pass now makes none."""
    params = grads = {}

    def _buffer(self, attr, shape, dtype):
        shape = tuple(int(n) for n in shape)
        buf = self.__dict__.get(attr)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = device_empty(shape, dtype)
            setattr(self, attr, buf)
        return buf


class _Conv(_Buffers):
    def __init__(self, layer):
        self.layer = layer
        self.k, self.F = layer.kernel_size, layer.out_channels
        self.params = {"W": cuda.to_device(self.device_layout("W", layer.params["W"])),
                       "b": cuda.to_device(layer.params["b"])}
        self.grads = {name: device_empty(p.shape, p.dtype) for name, p in self.params.items()}

    def device_layout(self, name, host):
        """The host layer's array of parameter ``name`` in the GEMM's layout (Conv2D's)."""
        return np.ascontiguousarray(Conv2D.gemm_weights(host)) if name == "W" else host

    def host_layout(self, name, device):
        return self.layer.layer_weights(device) if name == "W" else device

    def forward(self, x, training):
        n, h, w, c = x.shape
        top, bottom, left, right = self.layer.pads
        self.oh = kernels.conv_output_size(h, self.k, top, bottom)
        self.ow = kernels.conv_output_size(w, self.k, left, right)
        self.x_shape = x.shape
        cols = self._buffer("_cols", (n * self.oh * self.ow, self.k * self.k * c), x.dtype)
        conv.im2col(x, self.k, self.k, top, left, self.oh, self.ow, cols)
        y = self._buffer("_y", (len(cols), self.F), x.dtype)
        dense.gemm(cols, self.params["W"], y, trans_b=True)
        dense.bias_add(y, self.params["b"])
        return y.reshape(n, self.oh, self.ow, self.F)

    def backward(self, dy, param_grads, input_grad):
        dy2 = dy.reshape(len(dy) * self.oh * self.ow, self.F)
        if param_grads:
            dense.gemm(dy2, self._cols, self.grads["W"], trans_a=True)
            dense.column_sum(dy2, self.grads["b"])
        if not input_grad:
            return None
        W = self.params["W"]
        dcols = self._buffer("_dcols", (len(dy2), W.shape[1]), dy.dtype)
        dense.gemm(dy2, W, dcols)
        dx = self._buffer("_dx", (len(dy),) + self.x_shape[1:], dy.dtype)
        top, _, left, _ = self.layer.pads
        conv.col2im(dcols, self.k, self.k, top, left, self.oh, self.ow, dx)
        return dx


class _Dense(_Buffers):
    def __init__(self, layer):
        self.layer = layer
        self.params = {name: cuda.to_device(p) for name, p in layer.params.items()}
        self.grads = {name: device_empty(p.shape, p.dtype) for name, p in self.params.items()}

    def device_layout(self, name, host):
        return host

    def host_layout(self, name, device):
        return device

    def forward(self, x, training):
        self.x = x
        y = self._buffer("_y", (len(x), self.layer.out_features), x.dtype)
        dense.gemm(x, self.params["W"], y)
        dense.bias_add(y, self.params["b"])
        return y

    def backward(self, dy, param_grads, input_grad):
        if param_grads:
            dense.gemm(self.x, dy, self.grads["W"], trans_a=True)
            dense.column_sum(dy, self.grads["b"])
        if not input_grad:
            return None
        dx = self._buffer("_dx", (len(dy), self.layer.in_features), dy.dtype)
        dense.gemm(dy, self.params["W"], dx, trans_b=True)
        return dx


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
        self.x_shape = x.shape
        out = self._buffer("_y", (n, h // self.size, w // self.size, c), x.dtype)
        self.argmax = self._buffer("_argmax", out.shape, np.int64)
        pool.maxpool_forward(x, self.size, out, self.argmax)
        return out

    def backward(self, dy, param_grads, input_grad):
        dx = self._buffer("_dx", (len(dy),) + self.x_shape[1:], dy.dtype)
        pool.maxpool_backward(dy, self.argmax, self.size, dx)
        return dx


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


_DEVICE_LAYERS = {Conv2D: _Conv, Dense: _Dense, ReLU: _ReLU, MaxPool2D: _MaxPool,
                  Flatten: _Flatten, Dropout: _Dropout, Normalize: _Normalize}


class DeviceModel:
    """``model``'s parameters on the device and its passes run there.

    forward(x) takes and returns device arrays (x channels-last (N, H, W, C), or
    (N, D) for a Dense-first net); ``to_device_images`` moves host NCHW images
    there. Parameter updates made on the device reach ``model`` with ``to_host()``. The device arrays that
    forward and backward return are the layers' buffers: the next pass overwrites them
    (copy one to keep it).
    """

    def __init__(self, model):
        unknown = [type(l).__name__ for l in model.layers if type(l) not in _DEVICE_LAYERS]
        if unknown:
            raise TypeError(f"the cuda backend has no kernels for layers {unknown}")
        self.model = model
        self.dtype = model.dtype
        self.layers = [_DEVICE_LAYERS[type(l)](l) for l in model.layers]

    @property
    def params(self):
        """{"<layer index>.<name>": device array}, the names of Sequential.params."""
        return {f"{i}.{name}": p for i, layer in enumerate(self.layers)
                for name, p in layer.params.items()}

    @property
    def grads(self):
        return {f"{i}.{name}": g for i, layer in enumerate(self.layers)
                for name, g in layer.grads.items()}

    def _owner(self, key):
        index, name = key.split(".")
        return self.layers[int(index)], name

    def host_layout(self, key, device_array):
        """A device array of parameter ``key`` as a NumPy array in the host layer's layout."""
        layer, name = self._owner(key)
        return layer.host_layout(name, device_array.copy_to_host())

    def device_layout(self, key, host_array):
        """A host array of parameter ``key`` (host layout) as a new device array."""
        layer, name = self._owner(key)
        return cuda.to_device(np.ascontiguousarray(layer.device_layout(name, host_array)))

    def to_host(self):
        """Copy the device parameters into ``model``."""
        self.model.set_params({key: self.host_layout(key, p) for key, p in self.params.items()})

    def to_device_images(self, x):
        """Host NCHW (or (N, D)) images as a device array in the device's layout."""
        return cuda.to_device(kernels.channels_last(x) if x.ndim == 4 else np.ascontiguousarray(x))

    def forward(self, x, training=False):
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, dz, param_grads=True, input_grad=True):
        """dL/dx of the last forward (device, channels-last), filling ``grads`` when asked.

        dz may stack S seeds per forward sample, as Sequential.backward (then no param_grads).
        """
        dy = dz
        last = len(self.layers) - 1
        for i, layer in enumerate(reversed(self.layers)):
            dy = layer.backward(dy, param_grads, input_grad or i < last)
        return dy
