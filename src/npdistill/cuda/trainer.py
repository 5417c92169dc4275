"""train()'s epochs on the GPU: the training set is uploaded once, every batch is gathered
there, and only the dropout uniforms (drawn on the host from the epoch's generator, as the
CPU layers draw them, so that a seeded run draws the same masks on either backend) travel
per batch. The loss and accuracy of an epoch are summed on the device and read once.
"""
import numpy as np
from numba import cuda

from . import elementwise
from .device_model import DeviceModel, device_empty
from .passes import DevicePasses


class DeviceTrainer:
    """train()'s inner loop on the device for ``model`` and its SGD ``optimizer``.

    The optimizer's velocity (a resumed run's included) moves to the device and
    back with ``to_host``; so do the parameters.
    """

    def __init__(self, model, optimizer, x, y):
        self.net = DeviceModel(model)
        self.passes = DevicePasses(model, self.net)      # validation, on the live weights
        self.optimizer = optimizer
        self.x = self.net.to_device_images(x)
        self.y = cuda.to_device(np.ascontiguousarray(y))
        self.labels = cuda.to_device(np.ascontiguousarray(y if y.ndim == 1 else y.argmax(axis=1)))
        self.velocity = {}
        for key, p in self.net.params.items():
            host = optimizer.velocity.get(key)
            self.velocity[key] = (self.net.device_layout(key, host) if host is not None
                                  else cuda.to_device(np.zeros(p.shape, p.dtype)))

    def epoch(self, order, batch_size, epoch, temperature, loss_scale):
        """One pass over the training set in ``order``; returns (loss sum, correct count)."""
        lr = {key: self.optimizer.lr_for(key, epoch) for key in self.net.params}
        momentum = self.optimizer.momentum
        order = cuda.to_device(np.ascontiguousarray(order, dtype=np.int64))
        totals = cuda.to_device(np.zeros(2))
        params, grads = self.net.params, self.net.grads
        full = min(batch_size, len(order))       # batch buffers, allocated once per epoch
        buffers = [device_empty((full,) + a.shape[1:], a.dtype) for a in (self.x, self.y, self.labels)]
        loss_full = device_empty((full,), self.x.dtype)
        dz_full = None
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            xb, yb, lb = (b[:len(idx)] for b in buffers)    # the last batch: leading rows
            elementwise.take_rows(self.x, idx, xb)
            elementwise.take_rows(self.y, idx, yb)
            elementwise.take_rows(self.labels, idx, lb)
            z = self.net.forward(xb, training=True)
            if dz_full is None:
                dz_full = device_empty((full, z.shape[1]), z.dtype)
            loss, dz = loss_full[:len(idx)], dz_full[:len(idx)]
            elementwise.softmax_cross_entropy(z, yb, temperature, loss_scale, loss, dz)
            elementwise.batch_stats(z, lb, loss, totals)
            self.net.backward(dz, param_grads=True, input_grad=False)
            for key, p in params.items():
                elementwise.sgd_update(p, self.velocity[key], grads[key], lr[key], momentum)
        loss_sum, correct = totals.copy_to_host()
        return float(loss_sum), int(correct)

    def to_host(self):
        """Parameters into the model, velocity into the optimizer (host layouts)."""
        self.net.to_host()
        self.optimizer.velocity = {key: self.net.host_layout(key, v)
                                   for key, v in self.velocity.items()}
