"""Passes: what the attacks, the Jacobian, the metrics and the detector need of a model.

A class that implements the four members below gets ``check_images`` (the attacks',
metrics' and training's input check), ``logits``, ``input_gradient``, ``predict`` and
``predict_proba`` from this one definition. ``Sequential`` implements
it on the host, the cuda backend's device view (npdistill.cuda.passes.DevicePasses) on
the GPU; it is also how a model from elsewhere (a wrapped PyTorch net, say) reaches the
attacks.

To implement
------------
dtype : numpy dtype of the inputs and outputs (float32 or float64)
num_classes : K, the number of logits
check_input(x) -> x : refuse inputs of the wrong rank, dtype or channel count (ValueError,
    TypeError); return x
forward(x, training=False) -> logits (N, K) : NumPy in and out; keeps what backward needs
backward(dlogits, param_grads=True, input_grad=True, rows=None) -> dL/dx
    Backpropagates through the last forward. ``dlogits`` may stack S seeds per forward
    sample (S * N rows, seed-major: rows s*N .. s*N + N - 1 are seed s), which gives S
    vector-Jacobian products from one forward (the exact Jacobian's K one-hot seeds).
    ``rows``: dlogits holds only these samples of the last forward (input gradients
    only, param_grads=False); the attacks use it to skip finished samples.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .._checks import check_float_array, check_images, check_positive
from .softmax import softmax

# npdistill.typing's Images (and FloatArray), spelled out: typing imports this module
Array = npt.NDArray[np.floating]


class Passes:
    """Inference passes and input gradients, written once against forward / backward."""

    dtype: np.dtype = np.dtype(np.float32)
    num_classes: int | None = None

    def check_input(self, x: Array) -> Array:
        raise NotImplementedError

    def forward(self, x: Array, training: bool = False) -> Array:
        raise NotImplementedError

    def backward(self, dlogits: Array, param_grads: bool = True, input_grad: bool = True,
                 rows: npt.NDArray[np.integer] | None = None) -> Any:
        raise NotImplementedError

    def check_images(self, x: Array, name: str = "x",
                     box: tuple[float, float] | None = None) -> Array:
        """x if it is a non-empty batch of images in [0, 1] (what the metrics and training
        take), or in the clip box ``box`` (an attack's), that this model can take; else a
        ValueError or TypeError."""
        check_images(x, name, dtype=self.dtype, box=box)
        return self.check_input(x)

    def logits(self, x: Array, training: bool = False) -> Array:
        """Logits z (N, K) of x (N, C, H, W); keeps what backward() needs."""
        return self.forward(self.check_input(x), training)

    def input_gradient(self, x: Array, dlogits: Array) -> Array:
        """dL/dx for x (N, C, H, W) given dL/dlogits (N, K), in inference mode."""
        z = self.logits(x)
        dlogits = check_float_array(dlogits, "dlogits", ndim=2, dtype=self.dtype)
        if dlogits.shape != z.shape:
            raise ValueError(f"dlogits must have shape {z.shape}, got {dlogits.shape}")
        return self.backward(dlogits, param_grads=False)

    def batched_logits(self, x: Array, batch_size: int = 512) -> Array:
        """Logits of x computed ``batch_size`` samples at a time (nothing kept for backward)."""
        self.check_input(x)
        check_positive(batch_size, "batch_size", integer=True)
        if len(x) == 0:
            raise ValueError("x holds no samples")
        return np.concatenate([self.forward(x[i:i + batch_size])
                               for i in range(0, len(x), batch_size)])

    def predict(self, x: Array, batch_size: int = 512) -> npt.NDArray[np.int64]:
        """Predicted classes (N,) int64, computed batch by batch."""
        return self.batched_logits(x, batch_size).argmax(axis=1).astype(np.int64)

    def predict_proba(self, x: Array, T: float = 1.0, batch_size: int = 512) -> Array:
        """softmax(logits / T) (N, K). Models are deployed at T = 1."""
        return softmax(self.batched_logits(x, batch_size), T)
