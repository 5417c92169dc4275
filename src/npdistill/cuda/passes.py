"""DevicePasses: a Sequential's ``Passes`` (NumPy in and out) run on the GPU.

What ``placement.passes(model)`` hands the attacks, the Jacobian, the metrics and the
detector under the cuda backend: each forward and backward is one DeviceModel pass, with
one transfer each way and none per layer. Input gradients only: parameter gradients and
training passes are train()'s (cuda.trainer.DeviceTrainer).
"""
import numpy as np
from numba import cuda

from ..nn.passes import Passes
from .device_model import DeviceModel


class DevicePasses(Passes):
    """``model``'s passes on the device.

    model : the host Sequential (its input checks, dtype and class count are used);
    device_model : the DeviceModel to run (default: a new one holding model's parameters).
    """

    def __init__(self, model, device_model=None):
        self.host = model
        self.device_model = DeviceModel(model) if device_model is None else device_model
        self._batch = None

    @property
    def dtype(self):
        return self.host.dtype

    @property
    def num_classes(self):
        return self.host.num_classes

    def check_input(self, x):
        return self.host.check_input(x)

    def forward(self, x, training=False):
        if training:
            raise ValueError("DevicePasses runs inference passes only (train() trains on "
                             "the device with its own trainer)")
        net = self.device_model
        self._batch = len(x)
        return net.forward(net.to_device_images(x)).copy_to_host()

    def backward(self, dlogits, param_grads=True, input_grad=True, rows=None):
        if param_grads:
            raise ValueError("DevicePasses gives input gradients only: pass param_grads=False")
        if not input_grad:
            return None
        if rows is not None:        # the device pass runs the whole batch; zeros elsewhere
            full = np.zeros((self._batch,) + dlogits.shape[1:], dlogits.dtype)
            full[rows] = dlogits
            return self.backward(full, param_grads=False)[rows]
        dx = self.device_model.backward(cuda.to_device(np.ascontiguousarray(dlogits)),
                                        param_grads=False)
        dx = dx.copy_to_host()
        return dx.transpose(0, 3, 1, 2) if dx.ndim == 4 else dx
