"""Input-gradient regularization, or double backpropagation (Drucker & LeCun, 1992;
Ross & Doshi-Velez, 2018, "Improving the Adversarial Robustness and
Interpretability of Deep Neural Networks by Regularizing their Input Gradients").

The training objective becomes

    L(theta) + lambda * 1/B sum_n || d CE_n / d x_n ||^2,

with L the mean cross-entropy of the batch at temperature T and CE_n one
sample's. Its gradient w.r.t. the parameters needs second-order terms. With
g = dL/dx (the batch mean's input gradient, so that d CE_n / d x_n = B g_n)
the penalty is P = lambda * B * ||g||^2 and

    dP/dtheta = 2 lambda B (dg/dtheta)^T g = d/dh [dL/dtheta (x + h v)] at h = 0,
    v = 2 lambda B g,

the derivative of the parameter gradient when the input moves along v: one
forward-mode pass through the forward and the backward ("a backward of the
backward", see ``Layer.jvp`` and ``Layer.backward_jvp``). It is exact, with no
step size: ReLU and max pooling are piecewise linear, so only their masks
enter, and the softmax contributes its Hessian (diag(p) - p p^T) / (T^2 B).
Cost: about two more backward passes per batch.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import check_positive
from ..nn.model import Sequential
from ..nn.softmax import softmax
from ..train import train
from ..typing import FloatArray, Images, Labels


def penalty_and_gradient(model: Sequential, logits: FloatArray, dlogits: FloatArray,
                         temperature: float = 1.0, lam: float = 1.0) -> tuple[float, Images]:
    """Backpropagate the loss and the input-gradient penalty of the last forward pass.

    Parameters
    ----------
    model : Sequential whose last forward pass produced ``logits``
    logits : (B, K) that forward's output
    dlogits : (B, K) dL/dlogits of the mean cross-entropy at ``temperature``
        (what ``cross_entropy`` returns)
    lam : lambda, the penalty's weight

    Returns
    -------
    penalty : float, lam * mean_n ||d CE_n / d x_n||^2
    input_grad : (B, C, H, W) dL/dx of the loss alone (the penalty's g)
    On return each layer's ``grads`` holds d(L + penalty)/dparam.
    """
    layers = model.layers
    cotangents = []
    dy = dlogits
    for layer in reversed(layers):            # the ordinary backward, keeping every dy
        cotangents.append(dy)
        dy = layer.backward(dy, param_grads=True, input_grad=True)
    cotangents.reverse()
    g = dy
    n = len(g)
    loss_grads = [dict(layer.grads) for layer in layers]
    penalty = lam * n * float(np.sum(g.astype(np.float64) ** 2))

    direction = g * g.dtype.type(2 * lam * n)      # v: d(penalty)/dg
    tangents = [direction]
    for layer in layers:                      # forward mode: how each activation moves along v
        tangents.append(layer.jvp(tangents[-1]))
    p = softmax(logits, temperature)
    z_dot = tangents[-1]
    # the mean cross-entropy's Hessian in the logits: (diag(p) - p p^T) / (T^2 B)
    dy_dot = (p * z_dot - p * (p * z_dot).sum(axis=1, keepdims=True)) / p.dtype.type(
        temperature * temperature * n)
    for i in reversed(range(len(layers))):   # the backward's derivative along v
        dy_dot = layers[i].backward_jvp(cotangents[i], dy_dot, tangents[i])
    for layer, grads in zip(layers, loss_grads):
        for name, value in grads.items():
            layer.grads[name] = layer.grads[name] + value
    return penalty, g


class InputGradientPenalty:
    """The ``penalty`` hook of ``train`` for input-gradient regularization.

    lam : weight of mean_n ||d CE_n / d x_n||^2 beside the mean cross-entropy.
    """

    def __init__(self, lam=1.0):
        check_positive(lam, "lam")
        self.lam = float(lam)

    def config(self):
        return {"defense": "input_gradient_regularization", "lam": self.lam}

    def __call__(self, model, logits, dlogits, temperature):
        return penalty_and_gradient(model, logits, dlogits, temperature, self.lam)[0]


def gradient_regularization(model: Sequential, data: tuple[Images, Labels], *, lam: float = 1.0,
                            **train_options: Any) -> tuple[Sequential, dict[str, list]]:
    """Train ``model`` with input-gradient regularization: ``train(..., penalty=...)``.

    Returns (model, history); history["penalty"] is the mean penalty per epoch.
    The model's metadata records the defense and lambda.
    """
    model, history = train(model, data, penalty=InputGradientPenalty(lam), **train_options)
    model.metadata["defense"] = {"name": "input_gradient_regularization", "lam": float(lam)}
    return model, history
