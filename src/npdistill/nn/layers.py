"""Layers with hand-written forward and backward passes, side by side.

A layer keeps in ``forward`` what its ``backward`` needs. ``backward(dy)``
returns dL/dx and, unless ``param_grads=False``, fills ``grads`` with dL/dparam
under the same keys as ``params``. Images are NCHW; convolutions have stride 1.
Conv2D and MaxPool2D return NCHW views of channels-last memory (see
npdistill.kernels): the logical shape is NCHW everywhere, only the strides differ.

Stacked seeds: ``backward`` also accepts a dy whose batch is S times the batch
of the last forward (seed-major: row s * n + i belongs to sample i). Backward
is linear in dy, so one forward and one such backward give S vector-Jacobian
products per sample — how Jacobians and JSMA get several rows of dZ/dX without
repeating the forward pass. Parameter gradients need S = 1.

Forward mode, for input-gradient regularization (double backpropagation):
``jvp(x_dot)`` is the derivative of the last forward along x_dot (the
layer's linear part: no bias), and ``backward_jvp(dy, dy_dot, x_dot)`` the
derivative of the last backward when its input x moves along x_dot and its dy
along dy_dot: it returns the tangent of dx and fills ``grads`` with the tangent
of the parameter gradients. ReLU and max pooling are piecewise linear, so their
masks and argmax do not move (almost everywhere): their second derivatives are 0.
"""
import copy

import numpy as np

from .. import kernels
from .._checks import (check_choice, check_float_dtype, check_numbers, check_positive,
                       check_probability, check_seed)


def seed_repeats(dy, n):
    """S for a dy of batch S * n (see the module docstring)."""
    if len(dy) % n:
        raise ValueError(f"backward got a batch of {len(dy)} rows for a forward of {n}: "
                         f"expected a multiple of {n}")
    return len(dy) // n


def _check_param_grads(dy, n):
    if len(dy) != n:
        raise ValueError(f"parameter gradients need dy of batch {n} (one seed per sample), "
                         f"got {len(dy)}")


class Layer:
    """Base class: no parameters, identity configuration."""

    def __init__(self):
        self.params = {}
        self.grads = {}

    CONFIG: tuple[str, ...] = ()      # the constructor arguments a model file records

    def config(self):
        """Constructor arguments, JSON-serialisable (saved in model files)."""
        return {key: getattr(self, key) for key in self.CONFIG}

    @classmethod
    def config_keys(cls):
        return set(cls.CONFIG)

    @classmethod
    def param_shapes(cls, config):
        """{name: shape} of the parameters a layer of this ``config`` holds (computed
        without building it: model files are checked against it before loading)."""
        return {}

    def initialize(self, rng):
        """(Re)draw the parameters from ``rng``; parameter-free layers do nothing."""

    def output_shape(self, shape):
        """The shape forward() gives for an input of ``shape``, or None if it cannot take it."""
        return shape if len(shape) >= 2 else None

    def accepts(self):
        """What output_shape takes, in words (for error messages)."""
        return "(N, ...)"

    def astype(self, dtype):
        """A copy of the layer with parameters cast to ``dtype``."""
        clone = type(self)(**self.config(), **self._dtype_kwarg(dtype))
        for name, value in self.params.items():
            clone.params[name] = value.astype(dtype)
        return clone

    # names of the per-sample arrays the forward pass keeps for the input gradient
    _PER_SAMPLE: tuple[str, ...] = ()

    def restricted(self, rows):
        """The layer as if its last forward pass had seen only the samples ``rows``
        (an index array), for input gradients of those samples alone: a shallow copy
        holding those rows of its per-sample masks. Parameter gradients need the whole
        batch's inputs (Sequential.backward refuses them with rows)."""
        if not self._PER_SAMPLE:
            return self
        clone = copy.copy(self)
        for name in self._PER_SAMPLE:
            value = getattr(self, name)
            if value is not None:
                setattr(clone, name, _take_rows(value, rows))
        return clone

    def forward(self, x, training=False):
        """The layer's output for x; keeps what ``backward`` needs."""
        raise NotImplementedError

    def backward(self, dy, param_grads=True, input_grad=True):
        """dL/dx of the last forward from dL/dy (None without input_grad); fills ``grads``."""
        raise NotImplementedError

    def jvp(self, x_dot):
        raise NotImplementedError(f"{type(self).__name__} has no forward-mode derivative")

    def backward_jvp(self, dy, dy_dot, x_dot):
        """Piecewise-linear parameter-free layers: the backward is linear in dy with
        fixed masks, so its tangent is the backward of dy_dot."""
        return self.backward(dy_dot, param_grads=False)

    def _dtype_kwarg(self, dtype):
        return {"dtype": dtype} if self.params else {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def _take_rows(a, rows):
    """a[rows], keeping the channels-last memory behind an (N, C, H, W) view."""
    if a.ndim == 4 and not a.flags.c_contiguous and a.transpose(0, 2, 3, 1).flags.c_contiguous:
        return a.transpose(0, 2, 3, 1)[rows].transpose(0, 3, 1, 2)
    return a[rows]


def _he_uniform(rng, shape, fan_in, dtype):
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


class Conv2D(Layer):
    """2-D convolution, stride 1, weights (out, in, k, k). ``kernels.convolution.choose``
    picks the algorithm at every forward pass (the direct kernels, im2col + GEMM, or Winograd for
    3x3 kernels) and runs it; the layer holds the parameters and their checks.

    padding='valid' gives H - k + 1 rows; 'same' keeps H (for an even k the
    extra row and column of zeros go at the bottom and right, as in Keras).
    """

    def __init__(self, in_channels, out_channels, kernel_size, padding="valid",
                 dtype=np.float32, seed=None):
        super().__init__()
        check_choice(padding, "padding", ("valid", "same"))
        self.in_channels = check_positive(in_channels, "in_channels", integer=True)
        self.out_channels = check_positive(out_channels, "out_channels", integer=True)
        self.kernel_size = check_positive(kernel_size, "kernel_size", integer=True)
        self.padding = padding
        dtype = check_float_dtype(dtype)
        k = self.kernel_size
        self.pads = (0, 0, 0, 0) if padding == "valid" else ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2)
        self.params = {name: np.zeros(shape, dtype=dtype)
                       for name, shape in self.param_shapes(self.config()).items()}
        self.initialize(np.random.default_rng(check_seed(seed)))
        self._conv = None          # kernels.convolution's algorithm, kept with its buffers

    CONFIG = ("in_channels", "out_channels", "kernel_size", "padding")

    @classmethod
    def param_shapes(cls, config):
        k, F = config["kernel_size"], config["out_channels"]
        return {"W": (F, config["in_channels"], k, k), "b": (F,)}

    def output_shape(self, shape):
        if len(shape) != 4 or shape[1] != self.in_channels:
            return None
        k = self.kernel_size
        oh = kernels.conv_output_size(shape[2], k, *self.pads[:2])
        ow = kernels.conv_output_size(shape[3], k, *self.pads[2:])
        return (shape[0], self.out_channels, oh, ow) if oh >= 1 and ow >= 1 else None

    def accepts(self):
        least = 1 if self.padding == "same" else self.kernel_size
        return f"(N, {self.in_channels}, H, W) with H, W >= {least}"

    def initialize(self, rng):
        W = self.params["W"]
        fan_in = self.in_channels * self.kernel_size ** 2
        self.params["W"] = _he_uniform(rng, W.shape, fan_in, W.dtype)
        self.params["b"] = np.zeros_like(self.params["b"])

    @property
    def algorithm(self):
        """The algorithm the last forward pass ran ("im2col", "direct", "winograd2/4"),
        None before the first."""
        return self._conv and self._conv.name

    def forward(self, x, training=False, rectify=False):
        """y = x * W + b; rectify: max(y, 0), the ReLU that follows applied here
        (Sequential.forward asks, then hands y to ``ReLU.forward_rectified``): in the direct
        kernels' store, else in place -- one pass over y fewer, no second array."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2D expects input (N, {self.in_channels}, H, W), got {x.shape}")
        k = self.kernel_size
        self.oh = kernels.conv_output_size(x.shape[2], k, *self.pads[:2])
        self.ow = kernels.conv_output_size(x.shape[3], k, *self.pads[2:])
        self.x = x
        self._conv = kernels.convolution.choose(self.in_channels, self.out_channels,
                                                self.kernel_size, self.pads, self.oh, self.ow,
                                                x.dtype, self._conv)
        return self._nchw(self._conv.forward(x, self.params["W"], self.params["b"], rectify))

    def _nchw(self, y):
        """(N * oh * ow, F) rows as the NCHW view of their channels-last memory."""
        return y.reshape(-1, self.oh, self.ow, self.out_channels).transpose(0, 3, 1, 2)

    def backward(self, dy, param_grads=True, input_grad=True):
        dy2 = kernels.channels_last(dy).reshape(-1, self.out_channels)
        if param_grads:
            _check_param_grads(dy, len(self.x))
            self.grads["b"] = kernels.column_sums(dy2)
        dW, dx = self._conv.gradients(self.x, dy2, self.params["W"], param_grads, input_grad)
        if param_grads:
            self.grads["W"] = dW
        return dx

    def jvp(self, x_dot):
        return self._nchw(self._conv.forward(x_dot, self.params["W"]))

    def backward_jvp(self, dy, dy_dot, x_dot):
        # dW = sum dy (x) x  ->  dW' = sum dy' (x) x + dy (x) x';  dx = W^T dy  ->  dx' = W^T dy'
        F, W = self.out_channels, self.params["W"]
        dy2 = kernels.channels_last(dy).reshape(-1, F)
        dy2_dot = kernels.channels_last(dy_dot).reshape(-1, F)
        dW, dx_dot = self._conv.gradients(self.x, dy2_dot, W, True, True)
        dW += self._conv.gradients(x_dot, dy2, W, True, False)[0]
        self.grads["b"] = kernels.column_sums(dy2_dot)
        self.grads["W"] = dW
        return dx_dot


class MaxPool2D(Layer):
    """Non-overlapping max pooling with a size x size window and stride ``size``."""

    _PER_SAMPLE = ("_argmax",)

    def __init__(self, size=2):
        super().__init__()
        self.size = check_positive(size, "size", integer=True)
        self._argmax = None          # where each window's maximum was; reused across batches

    CONFIG = ("size",)

    def output_shape(self, shape):
        s = self.size
        if len(shape) != 4 or shape[2] < s or shape[3] < s:
            return None
        return (shape[0], shape[1], shape[2] // s, shape[3] // s)

    def accepts(self):
        return f"(N, C, H, W) with H, W >= {self.size}"

    def forward(self, x, training=False):
        if x.ndim != 4 or x.shape[2] < self.size or x.shape[3] < self.size:
            raise ValueError(f"MaxPool2D({self.size}) expects (N, C, H, W) with H, W >= "
                             f"{self.size}, got {x.shape}")
        self.x_shape = x.shape
        y, self._argmax = kernels.maxpool_forward(x, self.size, argmax=self._argmax)
        return y

    def backward(self, dy, param_grads=True, input_grad=True):
        seed_repeats(dy, len(self._argmax))
        return kernels.maxpool_backward(dy, self._argmax, (len(dy),) + self.x_shape[1:], self.size)

    def jvp(self, x_dot):
        return kernels.maxpool_gather(x_dot, self._argmax, self.size)


class Dense(Layer):
    """Fully connected layer y = x W + b, W of shape (in_features, out_features)."""

    def __init__(self, in_features, out_features, dtype=np.float32, seed=None):
        super().__init__()
        self.in_features = check_positive(in_features, "in_features", integer=True)
        self.out_features = check_positive(out_features, "out_features", integer=True)
        dtype = check_float_dtype(dtype)
        self.params = {name: np.zeros(shape, dtype=dtype)
                       for name, shape in self.param_shapes(self.config()).items()}
        self.initialize(np.random.default_rng(check_seed(seed)))

    CONFIG = ("in_features", "out_features")

    @classmethod
    def param_shapes(cls, config):
        features = config["out_features"]
        return {"W": (config["in_features"], features), "b": (features,)}

    def output_shape(self, shape):
        if len(shape) != 2 or shape[1] != self.in_features:
            return None
        return (shape[0], self.out_features)

    def accepts(self):
        return f"(N, {self.in_features})"

    def initialize(self, rng):
        W = self.params["W"]
        self.params["W"] = _he_uniform(rng, W.shape, self.in_features, W.dtype)
        self.params["b"] = np.zeros_like(self.params["b"])

    def forward(self, x, training=False):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Dense expects input (N, {self.in_features}), got {x.shape}")
        self.x = x
        return kernels.matmul(x, self.params["W"]) + self.params["b"]

    def backward(self, dy, param_grads=True, input_grad=True):
        if param_grads:
            _check_param_grads(dy, len(self.x))
            self.grads["W"] = kernels.matmul(self.x.T, dy)
            self.grads["b"] = kernels.column_sums(dy)
        return kernels.matmul(dy, self.params["W"].T) if input_grad else None

    def jvp(self, x_dot):
        return kernels.matmul(x_dot, self.params["W"])

    def backward_jvp(self, dy, dy_dot, x_dot):
        self.grads["W"] = kernels.matmul(self.x.T, dy_dot) + kernels.matmul(x_dot.T, dy)
        self.grads["b"] = kernels.column_sums(dy_dot)
        return kernels.matmul(dy_dot, self.params["W"].T)


class ReLU(Layer):
    """max(x, 0); the gradient at exactly 0 is taken as 0."""

    _PER_SAMPLE = ("mask",)

    def forward(self, x, training=False):
        y, self.mask = kernels.relu_forward(x)         # both keep x's memory layout
        return y

    def forward_rectified(self, y):
        """forward, where the layer before already applied max(., 0) to its output y
        (``Conv2D.forward(rectify=True)``): y itself, its mask kept (y > 0 there iff
        the unrectified output was > 0)."""
        self.mask = y > 0
        return y

    def backward(self, dy, param_grads=True, input_grad=True):
        seed_repeats(dy, len(self.mask))
        return kernels.relu_backward(dy, self.mask)

    def jvp(self, x_dot):
        return x_dot * self.mask


class Dropout(Layer):
    """Inverted dropout: at training time zero a fraction ``rate`` and scale the rest by 1/(1-rate).

    The mask is drawn from ``self.rng`` (a numpy Generator), which train() sets
    per epoch so that a seeded run is reproducible.
    """

    _PER_SAMPLE = ("mask",)

    def __init__(self, rate=0.5, seed=None):
        super().__init__()
        self.rate = check_probability(rate, "rate", one=False)
        self.rng = np.random.default_rng(check_seed(seed))

    CONFIG = ("rate",)

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self.mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float64) >= self.rate
        self.mask = keep.astype(x.dtype) / x.dtype.type(1.0 - self.rate)
        return x * self.mask

    def backward(self, dy, param_grads=True, input_grad=True):
        if self.mask is None:
            return dy
        repeats = seed_repeats(dy, len(self.mask))
        return (dy.reshape(repeats, *self.mask.shape) * self.mask).reshape(dy.shape)

    def jvp(self, x_dot):
        return x_dot if self.mask is None else x_dot * self.mask


class Normalize(Layer):
    """Per-channel standardization y = (x - mean[c]) / std[c], as the first layer of a
    model trained on normalized inputs: the model then takes pixels, and attacks,
    gradients and clip boxes live in pixel space (torchvision's Normalize, ART's and
    Foolbox's preprocessing). mean and std: one number per channel (or one for all).
    No parameters: they are the data's statistics, not learnt."""

    CONFIG = ("mean", "std")

    def __init__(self, mean, std):
        super().__init__()
        self.mean = check_numbers(mean, "mean")
        self.std = check_numbers(std, "std")
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(f"mean and std must have one value per channel, got "
                             f"{len(self.mean)} and {len(self.std)}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        self.channels = max(len(self.mean), len(self.std))

    def _column(self, values, dtype):
        return np.asarray(values, dtype=dtype).reshape(1, -1, 1, 1)

    def output_shape(self, shape):
        if len(shape) != 4 or (self.channels > 1 and shape[1] != self.channels):
            return None
        return shape

    def accepts(self):
        return f"(N, {self.channels if self.channels > 1 else 'C'}, H, W)"

    def forward(self, x, training=False):
        self.x_shape = x.shape
        return (x - self._column(self.mean, x.dtype)) * self._column(
            [1.0 / s for s in self.std], x.dtype)

    def backward(self, dy, param_grads=True, input_grad=True):
        return dy * self._column([1.0 / s for s in self.std], dy.dtype)

    def jvp(self, x_dot):
        return self.backward(x_dot)


class Flatten(Layer):
    """(N, ...) -> (N, prod(...))."""

    def output_shape(self, shape):
        return (shape[0], int(np.prod(shape[1:]))) if len(shape) >= 2 else None

    def forward(self, x, training=False):
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, param_grads=True, input_grad=True):
        return dy.reshape((len(dy),) + self.x_shape[1:])

    def jvp(self, x_dot):
        return x_dot.reshape(x_dot.shape[0], -1)


LAYER_TYPES = {cls.__name__: cls for cls in (Conv2D, MaxPool2D, Dense, ReLU, Dropout, Flatten,
                                             Normalize)}
