"""train()'s epochs on the GPU: the training set is uploaded once, every batch is gathered
there, and only the dropout uniforms (drawn on the host from the epoch's generator, as the
CPU layers draw them, so that a seeded run draws the same masks on either backend) travel
per batch. The loss and accuracy of an epoch are summed on the device and read once.
"""
import numpy as np
from numba import cuda

from . import elementwise, head
from .device_model import DeviceModel
from .stages import device_empty
from .passes import DevicePasses


class DeviceTrainer:
    """train()'s inner loop on the device for ``model`` and its SGD ``optimizer``.

    The optimizer's velocity (a resumed run's included) moves to the device and
    back with ``to_host``, as one flat buffer beside the parameters'; so do the parameters.
    A step is the forward pass with the loss in its head, the backward pass and one SGD
    launch over every parameter (each parameter's learning rate by its group).
    """

    def __init__(self, model, optimizer, x, y):
        self.net = DeviceModel(model)
        self.passes = DevicePasses(model, self.net)      # validation, on the live weights
        self.optimizer = optimizer
        self.x = self.net.to_device_images(x)
        self.y = cuda.to_device(np.ascontiguousarray(y))
        self.labels = cuda.to_device(np.ascontiguousarray(y if y.ndim == 1 else y.argmax(axis=1)))
        host = model.params
        self.velocity = cuda.to_device(self.net.flatten(
            {key: optimizer.velocity.get(key, np.zeros_like(p)) for key, p in host.items()}))
        self.groups = cuda.to_device(self.net.groups())

    def epoch(self, order, batch_size, epoch, temperature, loss_scale):
        """One pass over the training set in ``order``; returns (loss sum, correct count)."""
        lrs = [self.optimizer.lr_for(key, epoch) for key in self.net.keys]
        momentum = self.optimizer.momentum
        order = cuda.to_device(np.ascontiguousarray(order, dtype=np.int64))
        totals = cuda.to_device(np.zeros(2))
        full = min(batch_size, len(order))       # batch buffers, allocated once per epoch
        buffers = [device_empty((full,) + a.shape[1:], a.dtype) for a in (self.x, self.y, self.labels)]
        loss_full = device_empty((full,), self.x.dtype)
        dz_full = device_empty((full, self.net.model.num_classes), self.x.dtype)
        t = self.x.dtype.type
        soft = self.y.ndim == 2
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            xb, yb, lb = (b[:len(idx)] for b in buffers)    # the last batch: leading rows
            elementwise.take_rows(self.x, idx, xb)
            elementwise.take_rows(self.y, idx, yb)
            if soft:
                elementwise.take_rows(self.labels, idx, lb)
            loss, dz = loss_full[:len(idx)], dz_full[:len(idx)]
            vals = (t(temperature), t(temperature * len(idx)), t(loss_scale))
            row = ((head.CE_SOFT, (yb, loss, dz, totals, lb), vals) if soft else
                   (head.CE_HARD, (yb, loss, dz, totals), vals))
            self.net.forward(xb, training=True, row=row)
            self.net.backward(dz, param_grads=True, input_grad=False)
            elementwise.sgd_update(self.net.flat_params, self.velocity, self.net.flat_grads, lrs,
                                   momentum, group=self.groups)
        loss_sum, correct = totals.copy_to_host()
        return float(loss_sum), int(correct)

    def to_host(self):
        """Parameters into the model, velocity into the optimizer (host layouts)."""
        self.net.to_host()
        self.optimizer.velocity = self.net.unflatten(self.velocity.copy_to_host())
