"""The nets of Papernot et al. (2016), "Distillation as a Defense to
Adversarial Perturbations against Deep Neural Networks", Table 1, with their
training parameters (Table 2) recorded as the model's training defaults.
"""
import numpy as np

from .layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Normalize, ReLU
from .model import Sequential


def _conv_net(in_channels, image_size, convs, hidden, num_classes, seed, dtype, defaults, name,
              normalize=None):
    layers, channels, size = [], in_channels, image_size
    if normalize is not None:                             # (mean, std): the net takes pixels
        layers.append(Normalize(*normalize))
    for block in convs:                                   # e.g. (32, 32): two 3x3 convs + pool
        for width in block:
            layers += [Conv2D(channels, width, 3, dtype=dtype), ReLU()]
            channels, size = width, size - 2
        layers.append(MaxPool2D(2))
        size //= 2
    layers.append(Flatten())
    features = channels * size * size
    for width in hidden:
        layers += [Dense(features, width, dtype=dtype), ReLU(), Dropout(0.5)]
        features = width
    layers.append(Dense(features, num_classes, dtype=dtype))
    return Sequential(layers, seed=seed,
                      metadata={"name": name, "training_defaults": defaults})


def papernot_mnist(seed=0, dtype=np.float32):
    """MNIST net: conv 32-32, pool, conv 64-64, pool, FC 200-200 (dropout 0.5), 10 logits.

    Training defaults: lr 0.1, momentum 0.5, batch 128, lr halved every 10 epochs.
    """
    return _conv_net(1, 28, [(32, 32), (64, 64)], [200, 200], 10, seed, dtype,
                     {"lr": 0.1, "momentum": 0.5, "batch_size": 128,
                      "decay_every": 10, "decay_factor": 0.5}, "papernot_mnist")


def papernot_cifar10(seed=0, dtype=np.float32):
    """CIFAR-10 net: conv 64-64, pool, conv 128-128, pool, FC 256-256 (dropout 0.5), 10 logits.

    Training defaults: lr 0.01, momentum 0.9, batch 128, lr halved every 10 epochs.
    """
    return _conv_net(3, 32, [(64, 64), (128, 128)], [256, 256], 10, seed, dtype,
                     {"lr": 0.01, "momentum": 0.9, "batch_size": 128,
                      "decay_every": 10, "decay_factor": 0.5}, "papernot_cifar10")


# EMNIST balanced's training images: mean and standard deviation of the pixels in [0, 1]
# (the figures quoted for the split; the reproduction states what it used)
EMNIST_STATISTICS = (0.1751, 0.3332)


def emnist_net(seed=0, classes=47, dtype=np.float32, normalize=EMNIST_STATISTICS):
    """The EMNIST course report's net: the MNIST net's layers (conv 32-32, pool, conv 64-64,
    pool, FC 200-200 with dropout 0.5) with ``classes`` logits (47: balanced), behind a
    Normalize layer with ``normalize`` = (mean, std), so that it takes pixels in [0, 1] and
    attacks and their budgets stay in pixel space (None: no normalization).

    Training defaults (the report's): SGD lr 0.01, momentum 0.5, batch 128, no decay, 50
    epochs (recorded; ``train``'s own ``epochs`` is what runs).
    """
    return _conv_net(1, 28, [(32, 32), (64, 64)], [200, 200], classes, seed, dtype,
                     {"lr": 0.01, "momentum": 0.5, "batch_size": 128, "decay_every": 50,
                      "decay_factor": 1.0, "epochs": 50}, "emnist_net", normalize)
