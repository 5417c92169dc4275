"""The nets of Papernot et al. (2016), "Distillation as a Defense to
Adversarial Perturbations against Deep Neural Networks", Table 1, with their
training parameters (Table 2) recorded as the model's training defaults.
"""
import numpy as np

from .layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from .model import Sequential


def _conv_net(in_channels, image_size, convs, hidden, num_classes, seed, dtype, defaults, name):
    layers, channels, size = [], in_channels, image_size
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
