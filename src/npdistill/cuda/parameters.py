"""A DeviceModel's parameters in one flat device buffer (and its gradients in another), so
that one SGD launch updates them all: a convolution's as its (F, k*k*C + 1) matrix
[W | b], a Dense layer's as (in + 1, out) [W; b]. ``params``/``grads`` give the host's keys
as views; ``flatten``/``unflatten`` move between the host layers' layouts and the buffer.
"""
import numpy as np
from numba import cuda

from .. import kernels
from ..nn.layers import Conv2D
from .stages import Affine, Head, aug_shape, device_zeros


class FlatParameters:
    """The parameters of ``model`` laid out for ``stages`` (cuda/plan.py), which are bound
    to their parts of the buffers."""

    def __init__(self, model, stages):
        self.model, self.dtype = model, model.dtype
        self._layout = {}               # key -> (offset, shape of [W|b] or [W; b], layer)
        offset = 0
        index = {id(layer): i for i, layer in enumerate(model.layers)}
        for stage in stages:
            for layer in stage.param_layers:
                shape = aug_shape(layer)
                for name in ("W", "b"):
                    self._layout[f"{index[id(layer)]}.{name}"] = (offset, shape, layer)
                offset += shape[0] * shape[1]
        self.size = offset
        self.flat_params = cuda.to_device(self.flatten(model.params))
        self.flat_grads = device_zeros((offset,), self.dtype)
        for stage in stages:
            if isinstance(stage, Affine):
                off, shape, _ = self._layout[f"{index[id(stage.layer)]}.W"]
                end = off + shape[0] * shape[1]
                stage.bind(self.flat_params[off:end].reshape(shape),
                           self.flat_grads[off:end].reshape(shape))
            elif isinstance(stage, Head):
                stage.bind(self.flat_params, self.flat_grads,
                           [self._layout[f"{index[id(d)]}.W"][0] for d in stage.param_layers])

    @property
    def keys(self):
        """The host's parameter keys, "<layer index>.<name>", in Sequential.params' order."""
        return list(self.model.params)

    def _view(self, flat, key):
        """Parameter ``key``'s part of a flat buffer (host or device), in [W|b] / [W; b]."""
        offset, shape, layer = self._layout[key]
        aug = flat[offset:offset + shape[0] * shape[1]].reshape(shape)
        name = key.split(".")[1]
        if isinstance(layer, Conv2D):
            return aug[:, :-1] if name == "W" else aug[:, -1]
        return aug[:-1] if name == "W" else aug[-1]

    def flatten(self, arrays):
        """{key: host array in the host layers' layout} -> one host flat buffer."""
        flat = np.zeros(self.size, self.dtype)
        for key, value in arrays.items():
            self._view(flat, key)[...] = self._device_layout(key, value)
        return flat

    def unflatten(self, flat):
        """The inverse of flatten: {key: host array in the host layout}."""
        return {key: self._host_layout(key, np.ascontiguousarray(self._view(flat, key)))
                for key in self.keys}

    def _device_layout(self, key, host):
        layer = self._layout[key][2]
        if isinstance(layer, Conv2D) and key.endswith(".W"):
            return kernels.gemm_weights(host)
        return host

    def _host_layout(self, key, array):
        layer = self._layout[key][2]
        if isinstance(layer, Conv2D) and key.endswith(".W"):
            return kernels.layer_weights(array, layer.in_channels, layer.kernel_size)
        return array

    def groups(self):
        """An int32 per parameter of the flat buffer: its key's index in ``keys`` (the SGD
        launch's learning-rate groups)."""
        flat = np.zeros(self.size, np.int32)
        for i, key in enumerate(self.keys):
            self._view(flat, key)[...] = i
        return flat

    @property
    def params(self):
        """{key: device view of the flat parameter buffer}, the keys of Sequential.params."""
        return {key: self._view(self.flat_params, key) for key in self.keys}

    @property
    def grads(self):
        return {key: self._view(self.flat_grads, key) for key in self.keys}

    def host_layout(self, key, device_array):
        """A device array of parameter ``key`` as a NumPy array in the host layer's layout."""
        return self._host_layout(key, np.ascontiguousarray(device_array.copy_to_host()))

    def device_layout(self, key, host_array):
        """A host array of parameter ``key`` (host layout) as a new device array."""
        return cuda.to_device(np.ascontiguousarray(self._device_layout(key, host_array)))
