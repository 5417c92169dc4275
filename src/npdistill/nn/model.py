"""Sequential: a stack of layers that outputs logits, with save / load.

Model files are ``.npz`` archives of the parameters plus one JSON metadata
entry (architecture, dtype, training temperature and config, library version,
a sha256 of the parameters), read back with ``allow_pickle=False``: a model
file never runs code when it is opened.
"""
import copy
import hashlib
import json
import os
import zipfile

import numpy as np

from .._checks import check_float_array
from .._version import __version__
from .layers import LAYER_TYPES, Conv2D, Dense
from .passes import Passes

FORMAT = "npdistill-model"
FORMAT_VERSION = 1
_META_KEY = "__metadata__"


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

    def __init__(self, layers, seed=None, metadata=None):
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        unknown = [type(l).__name__ for l in layers if type(l).__name__ not in LAYER_TYPES]
        if unknown:
            raise TypeError(f"unknown layer types {unknown}: expected {sorted(LAYER_TYPES)}")
        self.layers = list(layers)
        self.metadata = dict(metadata or {})
        if seed is not None:
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
        """x itself if it fits the first layer (rank, dtype, channels), else an error."""
        first = self.layers[0]
        if isinstance(first, Conv2D):
            check_float_array(x, "x", ndim=4, dtype=self.dtype)
            if x.shape[1] != first.in_channels:
                raise ValueError(f"x must have shape (N, {first.in_channels}, H, W), got {x.shape}")
        elif isinstance(first, Dense):
            check_float_array(x, "x", ndim=2, dtype=self.dtype)
        else:
            check_float_array(x, "x", dtype=self.dtype)
        return x

    # -- forward and backward ------------------------------------------------
    def forward(self, x, training=False):
        """Logits of x without input checks (the hot path used by train and attacks)."""
        for layer in self.layers:
            x = layer.forward(x, training)
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
        return self.layers[-1].out_features if isinstance(self.layers[-1], Dense) else None

    def astype(self, dtype):
        """A copy of the model with every parameter cast to ``dtype``."""
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"a model is float32 or float64, got {dtype}")
        return Sequential([layer.astype(dtype) for layer in self.layers],
                          metadata=copy.deepcopy(self.metadata))

    def copy(self):
        return self.astype(self.dtype)

    def checksum(self):
        """sha256 of the parameters: the same for the same weights."""
        return _checksum(self.params)

    def architecture(self):
        return [{"type": type(layer).__name__, "config": layer.config()} for layer in self.layers]

    def __repr__(self):
        inner = ",\n  ".join(map(repr, self.layers))
        return f"Sequential([\n  {inner}\n], dtype={self.dtype})"

    # -- files ---------------------------------------------------------------
    def save(self, path):
        """Write the model to ``path`` (.npz with JSON metadata)."""
        header = {"architecture": self.architecture(), "metadata": self.metadata}
        write_archive(path, self.params, header)

    @classmethod
    def load(cls, path):
        return load_model(path)


def _checksum(arrays):
    """sha256 of named arrays (a model's parameters), independent of their order."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def write_archive(path, arrays, header):
    """Atomically write ``arrays`` and a JSON ``header`` (plus format, version, checksum)."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"model files end in .npz, got {path!r}")
    if any(key == _META_KEY for key in arrays):
        raise ValueError(f"{_META_KEY!r} is a reserved name")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "library_version": __version__, **header,
            "parameters": {k: {"shape": list(v.shape), "dtype": v.dtype.str}
                           for k, v in arrays.items()},
            "checksum": _checksum(arrays)}
    tmp = path[:-4] + ".tmp.npz"
    np.savez(tmp, **{_META_KEY: np.array(json.dumps(meta))}, **arrays)
    os.replace(tmp, path)


def read_archive(path):
    """Read and verify an archive written by write_archive: (arrays, metadata)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npz model file (truncated or corrupted?): "
                         f"{exc}") from exc
    if _META_KEY not in arrays:
        raise ValueError(f"{path}: no npdistill metadata: not an npdistill model file")
    try:
        meta = json.loads(str(arrays.pop(_META_KEY)))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: metadata is not valid JSON: {exc}") from exc
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: expected format {FORMAT} v{FORMAT_VERSION}, got "
                         f"{meta.get('format')} v{meta.get('format_version')}")
    if set(arrays) != set(meta["parameters"]):
        raise ValueError(f"{path}: the archive holds {sorted(arrays)} but its metadata lists "
                         f"{sorted(meta['parameters'])}")
    if _checksum(arrays) != meta["checksum"]:
        raise ValueError(f"{path}: parameter checksum mismatch: the file was modified or damaged")
    return arrays, meta


def model_from_archive(params, meta, path="<archive>"):
    """Build the Sequential that ``meta['architecture']`` describes, holding ``params``."""
    layers = []
    for spec in meta["architecture"]:
        if spec["type"] not in LAYER_TYPES:
            raise ValueError(f"{path}: unknown layer type {spec['type']!r}")
        layers.append(LAYER_TYPES[spec["type"]](**spec["config"]))
    model = Sequential(layers, metadata=meta.get("metadata", {}))
    if set(params) != set(model.params):
        raise ValueError(f"{path}: parameters {sorted(params)} do not match the architecture's "
                         f"{sorted(model.params)}")
    dtypes = {v.dtype for v in params.values()}
    if len(dtypes) == 1:
        model = model.astype(dtypes.pop())
    try:
        model.set_params(params)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return model


def load_model(path):
    """Load a model written by ``Sequential.save``; verifies format and checksum."""
    arrays, meta = read_archive(path)
    return model_from_archive(arrays, meta, os.fspath(path))
