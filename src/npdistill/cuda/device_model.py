"""A Sequential on the GPU: its parameters, activations and gradients in device arrays.

``DeviceModel(model)`` mirrors a Sequential of Normalize, Conv2D, ReLU, MaxPool2D,
Flatten, Dense and Dropout layers with the kernels of this package, in as few launches as
its layers allow (bench/cuda_launches.py counts them):

- a Conv2D or Dense with the ReLU and Dropout after it is one product of cuda/fused.py
  (forward: its bias, ReLU and dropout in the epilogue; weight gradient: bias gradient
  included; input gradient: the backward of the layer before it, ReLU mask, dropout mask
  or max-pool scatter, in the epilogue);
- the Dense layers at the net's end, with the MaxPool2D and Flatten before them, are its
  head (cuda/head.py): one launch forward, the loss or an attack's seeds included, one
  backward;
- any other layer runs alone (its kernel of cuda/elementwise.py or cuda/pool.py).

The stages are cuda/stages.py's, chosen by cuda/plan.py; the parameters live in one flat
device buffer (cuda/parameters.py: one SGD launch updates them all);
``params``/``grads`` give the host's keys as views, ``to_host`` writes them back in the
host layers' layouts. Activations are channels-last (N, H, W, C) device arrays, as the
CPU kernels' memory; Flatten gives the host's NCHW order, so that Dense weights are the
host's.

Its passes take and return device arrays; ``cuda.passes.DevicePasses`` puts the
``Passes`` interface (NumPy in and out) on it, ``cuda.trainer.DeviceTrainer`` runs
train()'s epochs with it.
"""
import numpy as np
from numba import cuda

from .. import kernels
from . import head
from .parameters import FlatParameters
from .plan import KNOWN, plan
from .stages import Affine, Head


class DeviceModel:
    """``model``'s parameters on the device and its passes run there (see the module).

    forward(x) takes and returns device arrays (x channels-last (N, H, W, C), or (N, D)
    for a Dense-first net); ``to_device_images`` moves host NCHW images there. Parameter
    updates made on the device reach ``model`` with ``to_host()``. The device arrays that
    forward and backward return are the stages' buffers: the next pass overwrites them
    (copy one to keep it).
    """

    def __init__(self, model):
        unknown = [type(l).__name__ for l in model.layers if type(l) not in KNOWN]
        if unknown:
            raise TypeError(f"the cuda backend has no kernels for layers {unknown}")
        self.model = model
        self.dtype = model.dtype
        self.stages = plan(model.layers)
        self.parameters = FlatParameters(model, self.stages)
        self.size = self.parameters.size
        self.flat_params, self.flat_grads = self.parameters.flat_params, self.parameters.flat_grads

    @property
    def keys(self):
        return self.parameters.keys

    @property
    def params(self):
        return self.parameters.params

    @property
    def grads(self):
        return self.parameters.grads

    def flatten(self, arrays):
        return self.parameters.flatten(arrays)

    def unflatten(self, flat):
        return self.parameters.unflatten(flat)

    def groups(self):
        return self.parameters.groups()

    def host_layout(self, key, device_array):
        return self.parameters.host_layout(key, device_array)

    def device_layout(self, key, host_array):
        return self.parameters.device_layout(key, host_array)

    def to_host(self):
        """Copy the device parameters into ``model``."""
        self.model.set_params(self.unflatten(self.flat_params.copy_to_host()))

    def to_device_images(self, x):
        """Host NCHW (or (N, D)) images as a device array in the device's layout."""
        return cuda.to_device(kernels.channels_last(x) if x.ndim == 4 else np.ascontiguousarray(x))

    def forward(self, x, training=False, row=None):
        """The logits of x (device arrays). row: (kind, args, vals), a row function of
        cuda/head.py run on the logits in the same pass (the loss, an attack's seeds)."""
        for stage in self.stages:
            if isinstance(stage, Head):
                return stage.forward(x, training, row)
            x = stage.forward(x, training)
        if row is not None:
            head.rows(row[0], x, row[1], row[2])
        return x

    def backward(self, dz, param_grads=True, input_grad=True):
        """dL/dx of the last forward (device, channels-last), filling ``grads`` when asked.

        dz may stack S seeds per forward sample, as Sequential.backward (then no param_grads).
        """
        dy, pre = dz, False
        i = len(self.stages) - 1
        while i >= 0:
            stage = self.stages[i]
            if isinstance(stage, Affine) and not pre:
                dy = stage.activation_backward(dy)
            before = self.stages[:i][::-1]
            dy, taken, pre = stage.backward(dy, param_grads, input_grad or i > 0, before)
            i -= 1 + taken
        return dy
