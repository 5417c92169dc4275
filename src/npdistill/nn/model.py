"""Sequential: a stack of layers that outputs logits, with save / load (the file format
is nn/archive.py's; ``model_from_archive`` builds the model an archive describes)."""
from __future__ import annotations

import copy
import os
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from .. import kernels
from .._checks import FLOAT_DTYPES, check_float_array, check_seed
from .archive import archive_checksum, read_archive, write_archive
from .layers import LAYER_TYPES, Conv2D, Dense, Dropout, Layer, ReLU
from .passes import Passes



class Sequential(Passes):
    """Layers applied in order; the output is the logits. Implements ``Passes``.

    Parameters
    ----------
    layers : list of Layer
    seed : int or None. If given, every layer's parameters are redrawn, in
        order, from ``numpy.random.default_rng(seed)``.
    metadata : dict of JSON values saved with the model (training temperature,
        training defaults, data checksum ...).
    """

    def __init__(self, layers: Sequence[Layer], seed: int | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        unknown = [type(l).__name__ for l in layers if type(l).__name__ not in LAYER_TYPES]
        if unknown:
            raise TypeError(f"unknown layer types {unknown}: expected {sorted(LAYER_TYPES)}")
        self.layers = list(layers)
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        self.metadata = dict(metadata or {})
        self._forward_batch = None      # the batch size of the last forward (backward needs one)
        if check_seed(seed) is not None:
            rng = np.random.default_rng(seed)
            for layer in self.layers:
                layer.initialize(rng)
        dtypes = {v.dtype for layer in self.layers for v in layer.params.values()}
        if len(dtypes) > 1:
            raise TypeError(f"all parameters must share one dtype, got {sorted(map(str, dtypes))}")

    # -- shapes and dtypes ---------------------------------------------------
    @property
    def dtype(self):
        for layer in self.layers:
            for value in layer.params.values():
                return value.dtype
        return np.dtype(np.float32)

    def check_input(self, x):
        """x itself if the layers can take it (rank, dtype, channels, sizes), else an error."""
        first = self.layers[0]
        rank = 4 if isinstance(first, Conv2D) else 2 if isinstance(first, Dense) else None
        check_float_array(x, "x", ndim=rank, dtype=self.dtype)
        if len(x) == 0:
            raise ValueError(f"x holds no samples (shape {x.shape})")
        self.output_shape(x.shape, "x")
        return x

    def output_shape(self, shape, name="input"):
        """The logits' shape for an input of ``shape``; a ValueError naming the first
        layer that cannot take it (wrong rank or channels, images smaller than a kernel)."""
        given = shape = tuple(shape)
        for i, layer in enumerate(self.layers):
            out = layer.output_shape(shape)
            if out is None:
                raise ValueError(f"{name} of shape {given} does not fit the model: layer {i}, "
                                 f"{layer!r}, takes {layer.accepts()} but would get {shape}")
            shape = out
        return shape

    # -- forward and backward ------------------------------------------------
    def forward(self, x, training=False):
        """Logits of x without input checks (the hot path used by train and attacks).
        A Conv2D followed by a ReLU applies the ReLU itself (``Conv2D.forward``'s
        rectify): one pass over the activations fewer; both layers keep what their
        backward needs, as when each runs alone."""
        self._forward_batch = len(x)
        layers, i = self.layers, 0
        while i < len(layers):
            layer = layers[i]
            if isinstance(layer, Conv2D) and i + 1 < len(layers) \
                    and isinstance(layers[i + 1], ReLU):
                x = layers[i + 1].forward_rectified(layer.forward(x, training, rectify=True))
                i += 2
            else:
                x = layer.forward(x, training)
                i += 1
        return x

    def backward(self, dlogits, param_grads=True, input_grad=True, rows=None):
        """Backpropagate dL/dlogits (N, K) through the last forward pass.

        Fills each layer's ``grads`` when ``param_grads``; returns dL/dx (or
        None when ``input_grad`` is False, which skips the first layer's
        input gradient).

        rows : optional index array: dlogits holds only these samples of the last
            forward pass, and dL/dx is theirs (input gradients only). The attacks
            use it to skip samples whose dL/dlogits is zero.
        """
        if self._forward_batch is None:
            raise ValueError("backward needs a forward pass first: call model.logits(x) (or "
                             "model.forward(x)) on the batch, then backward")
        layers = self.layers
        if rows is not None:
            if param_grads:
                raise ValueError("backward with rows= gives input gradients only: pass "
                                 "param_grads=False (parameter gradients need the whole batch)")
            rows = np.asarray(rows)
            if rows.ndim != 1 or rows.dtype.kind not in "iu" or len(rows) != len(dlogits):
                raise ValueError(f"rows must be a 1-d integer array with one entry per row of "
                                 f"dlogits ({len(dlogits)}), got {rows.dtype} of shape {rows.shape}")
            layers = [layer.restricted(rows) for layer in layers]
        dy = dlogits
        last = len(layers) - 1
        for i, layer in enumerate(reversed(layers)):
            dy = layer.backward(dy, param_grads=param_grads, input_grad=input_grad or i < last)
        return dy

    # -- parameters ----------------------------------------------------------
    @property
    def params(self):
        """{"<layer index>.<name>": array} — the live arrays, not copies."""
        return {f"{i}.{name}": value for i, layer in enumerate(self.layers)
                for name, value in layer.params.items()}

    @property
    def grads(self):
        return {f"{i}.{name}": value for i, layer in enumerate(self.layers)
                for name, value in layer.grads.items()}

    def set_params(self, params):
        """Replace the parameters with arrays of the same names, shapes and dtype."""
        expected = self.params
        if set(params) != set(expected):
            raise ValueError(f"parameter names differ: expected {sorted(expected)}, "
                             f"got {sorted(params)}")
        for key, value in params.items():
            if value.shape != expected[key].shape or value.dtype != expected[key].dtype:
                raise ValueError(f"parameter {key}: expected shape {expected[key].shape} "
                                 f"{expected[key].dtype}, got {value.shape} {value.dtype}")
        for key, value in params.items():
            i, name = key.split(".", 1)
            self.layers[int(i)].params[name] = value.copy()

    def set_rng(self, rng):
        """Give every stochastic layer (Dropout) this Generator."""
        for layer in self.layers:
            if hasattr(layer, "rng"):
                layer.rng = rng

    @property
    def num_classes(self):
        """K: the width of the logits layer, or None (the output is not class logits)."""
        i = self.logits_layer
        return None if i is None else self.layers[i].out_features

    @property
    def logits_layer(self):
        """Index of the layer that outputs the logits: the last Dense layer when only
        ReLU/Dropout follow it; None if there is none."""
        for i in range(len(self.layers) - 1, -1, -1):
            if isinstance(self.layers[i], Dense):
                return i
            if not isinstance(self.layers[i], (ReLU, Dropout)):
                return None
        return None

    def astype(self, dtype: npt.DTypeLike) -> Sequential:
        """A copy of the model with every parameter cast to ``dtype``."""
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"a model is float32 or float64, got {dtype}")
        return Sequential([layer.astype(dtype) for layer in self.layers],
                          metadata=copy.deepcopy(self.metadata))

    def copy(self) -> Sequential:
        return self.astype(self.dtype)

    def checksum(self) -> str:
        """sha256 of the parameters: the same for the same weights."""
        return archive_checksum(self.params)

    def architecture(self):
        return [{"type": type(layer).__name__, "config": layer.config()} for layer in self.layers]

    def __repr__(self):
        inner = ",\n  ".join(map(repr, self.layers))
        return f"Sequential([\n  {inner}\n], dtype={self.dtype})"

    # -- files ---------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to ``path`` (.npz with JSON metadata)."""
        header = {"architecture": self.architecture(), "metadata": self.metadata,
                  "environment": kernels.environment()}
        write_archive(path, self.params, header)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Sequential:
        return load_model(path)


def model_from_archive(params, meta, path="<archive>"):
    """Build the Sequential that ``meta['architecture']`` describes, holding ``params``.

    Every layer's configuration is checked, and the parameter shapes it implies are
    compared with the arrays stored, before any layer is built (built layers allocate
    their parameters)."""
    architecture = meta.get("architecture")
    if not isinstance(architecture, list) or not architecture:
        raise ValueError(f"{path}: no architecture (a non-empty list of layers): not a model "
                         f"file")
    implied = {}
    for i, spec in enumerate(architecture):
        cls, config = _layer_spec(spec, i, path)
        try:
            shapes = cls.param_shapes(config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: layer {i} ({spec['type']}): {exc}") from None
        implied.update({f"{i}.{name}": shape for name, shape in shapes.items()})
    if set(params) != set(implied):
        raise ValueError(f"{path}: parameters {sorted(params)} do not match the architecture's "
                         f"{sorted(implied)}")
    for key, shape in implied.items():
        if params[key].shape != shape:
            raise ValueError(f"{path}: the architecture gives parameter {key} the shape {shape} "
                             f"but the file stores {params[key].shape}")
    dtypes = {v.dtype for v in params.values()}
    if len(dtypes) > 1 or not dtypes <= set(FLOAT_DTYPES):
        raise ValueError(f"{path}: parameters must share one dtype, float32 or float64, got "
                         f"{sorted(map(str, dtypes))}")
    dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
    try:
        layers = [_layer_spec(spec, i, path)[0](**spec["config"],
                                                  **({"dtype": dtype} if spec["type"] in
                                                     ("Conv2D", "Dense") else {}))
                  for i, spec in enumerate(architecture)]
        model = Sequential(layers, metadata=meta.get("metadata", {}))
        model.set_params(params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return model


def _layer_spec(spec, i, path):
    """(layer class, config) of an architecture entry, its keys checked."""
    if not isinstance(spec, dict) or set(spec) != {"type", "config"} \
            or not isinstance(spec["config"], dict):
        raise ValueError(f"{path}: layer {i} must be {{'type': name, 'config': dict}}, "
                         f"got {spec!r}")
    cls = LAYER_TYPES.get(spec["type"]) if isinstance(spec["type"], str) else None
    if cls is None:
        raise ValueError(f"{path}: layer {i} has unknown type {spec['type']!r} (known: "
                         f"{sorted(LAYER_TYPES)})")
    keys = cls.config_keys()
    if set(spec["config"]) != keys:
        raise ValueError(f"{path}: layer {i} ({spec['type']}) config must have the keys "
                         f"{sorted(keys)}, got {sorted(spec['config'])}")
    return cls, spec["config"]


def load_model(path: str | os.PathLike[str]) -> Sequential:
    """Load a model written by ``Sequential.save``; verifies format, schema and checksum."""
    arrays, meta = read_archive(path)
    return model_from_archive(arrays, meta, os.fspath(path))
