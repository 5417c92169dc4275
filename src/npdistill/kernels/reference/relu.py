"""NumPy reference of the ReLU kernels (ext/relu.pyx), on 1-D arrays: a layer's values
in memory order (``npdistill.kernels.relu_forward`` flattens and restores the layout).

forward: out = max(x, 0) (NaN stays NaN), mask = x > 0.
backward: dx = dy * mask, where dy holds S stacked copies of the mask's shape (seeds of
the input gradient, see nn/layers.seed_repeats): mask repeats every len(mask) values.
"""
import numpy as np


def forward(x, out, mask):
    np.maximum(x, x.dtype.type(0), out=out)
    np.greater(x, 0, out=mask.view(bool))


def backward(dy, mask, dx):
    np.multiply(dy.reshape(-1, len(mask)), mask, out=dx.reshape(-1, len(mask)))
