"""The plan of a DeviceModel: which layers of a Sequential run as one stage
(cuda/stages.py) -- the fewest launches its layers allow (bench/cuda_launches.py)."""
from ..nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Normalize, ReLU
from .stages import Affine, Alone, Head

KNOWN = (Conv2D, Dense, ReLU, MaxPool2D, Flatten, Dropout, Normalize)


def plan(layers):
    """The stages of ``layers``: the head at the end, products with their activations, the
    rest alone."""
    head_at, chunks = len(layers), []
    i = len(layers)
    while True:                                   # the longest tail of Dense chunks
        j = i - 1
        drop = relu = None
        if j >= 0 and isinstance(layers[j], Dropout):
            drop, j = layers[j], j - 1
        if j >= 0 and isinstance(layers[j], ReLU):
            relu, j = layers[j], j - 1
        if j >= 0 and isinstance(layers[j], Dense):
            chunks.insert(0, (layers[j], relu, drop))
            i = head_at = j
            continue
        break
    pool_size = 0
    if chunks:
        j = head_at - 1
        if j >= 0 and isinstance(layers[j], Flatten):
            pool_size, j = 1, j - 1
            if j >= 0 and isinstance(layers[j], MaxPool2D):
                pool_size, j = layers[j].size, j - 1
            head_at = j + 1
    stages, i = [], 0
    while i < head_at:
        layer = layers[i]
        if isinstance(layer, (Conv2D, Dense)):
            relu = drop = None
            j = i + 1
            if j < head_at and isinstance(layers[j], ReLU):
                relu, j = layers[j], j + 1
            if j < head_at and isinstance(layers[j], Dropout):
                drop, j = layers[j], j + 1
            stages.append(Affine(layer, relu, drop))
            i = j
        else:
            stages.append(Alone(layer))
            i += 1
    if chunks:
        stages.append(Head(pool_size, chunks))
    return stages
