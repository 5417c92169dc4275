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

from .. import kernels
from .._checks import FLOAT_DTYPES, check_float_array, check_seed
from .._files import replacing
from .._version import __version__
from .layers import LAYER_TYPES, Conv2D, Dense, Dropout, ReLU
from .passes import Passes

FORMAT = "npdistill-model"
FORMAT_VERSION = 2          # 2: the checksum covers the header too (1 still loads)
_READABLE_VERSIONS = (1, 2)
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
        return archive_checksum(self.params)

    def architecture(self):
        return [{"type": type(layer).__name__, "config": layer.config()} for layer in self.layers]

    def __repr__(self):
        inner = ",\n  ".join(map(repr, self.layers))
        return f"Sequential([\n  {inner}\n], dtype={self.dtype})"

    # -- files ---------------------------------------------------------------
    def save(self, path):
        """Write the model to ``path`` (.npz with JSON metadata)."""
        header = {"architecture": self.architecture(), "metadata": self.metadata,
                  "environment": kernels.environment()}
        write_archive(path, self.params, header)

    @classmethod
    def load(cls, path):
        return load_model(path)


def archive_checksum(arrays, header=None):
    """sha256 of named arrays, independent of their order, and (format 2) of the JSON
    header written with them, so that an edited architecture or metadata is caught."""
    digest = hashlib.sha256()
    if header is not None:
        digest.update(json.dumps(header, sort_keys=True).encode())
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def write_archive(path, arrays, header, what="model"):
    """Atomically write ``arrays`` and a JSON ``header`` (plus format, version, checksum).

    The checksum covers the arrays and the whole header. The file appears at ``path``
    complete or not at all, whoever else writes or reads it meanwhile. ``what``: the
    file's kind, named by an OS error (_files.WriteError).
    """
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"model files end in .npz, got {path!r}")
    if any(key == _META_KEY for key in arrays):
        raise ValueError(f"{_META_KEY!r} is a reserved name")
    bad = [key for key, value in arrays.items()
           if value.dtype.kind in "fc" and not np.isfinite(value).all()]
    if bad:
        raise ValueError(f"refusing to write {path}: {', '.join(sorted(bad))} hold NaN or "
                         f"infinite values (a diverged model?)")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "library_version": __version__, **header,
            "parameters": {k: {"shape": list(v.shape), "dtype": v.dtype.str}
                           for k, v in arrays.items()}}
    meta = json.loads(json.dumps(meta))          # what a reader will see (tuples become lists)
    meta["checksum"] = archive_checksum(arrays, meta)
    with replacing(path, what) as tmp:
        np.savez(tmp, **{_META_KEY: np.array(json.dumps(meta))}, **arrays)


def read_archive(path):
    """Read and verify an archive written by write_archive: (arrays, metadata).

    The header is parsed and checked first, then each stored array's own header
    against it, and only then are the arrays read: a file cannot make the reader
    allocate more than it holds. Format 1 files (checksum of the arrays only) load too.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz archive (a .npy array, or a truncated file?)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if _META_KEY not in archive.files:
                raise ValueError(f"{path}: no npdistill metadata: not an npdistill model file")
            meta = _header(archive[_META_KEY], path)
            _check_members(archive.zip, meta["parameters"], path)
            arrays = {key: archive[key] for key in archive.files if key != _META_KEY}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a readable .npz model file (truncated or corrupted?): "
                         f"{exc}") from exc
    header = {k: v for k, v in meta.items() if k != "checksum"}
    expected = archive_checksum(arrays, header if meta["format_version"] >= 2 else None)
    if expected != meta["checksum"]:
        raise ValueError(f"{path}: checksum mismatch: the file was modified or damaged")
    return arrays, meta


def _header(raw, path):
    """The JSON header, checked against the format's schema."""
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ValueError(f"{path}: the metadata entry is not a JSON string")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: metadata is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an {FORMAT} file (no format field {FORMAT!r})")
    version = meta.get("format_version")
    if version not in _READABLE_VERSIONS:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ValueError(f"{path}: format version {version!r} "
                         + ("is newer than this npdistill reads: upgrade npdistill" if newer
                            else f"is unknown (this npdistill reads {_READABLE_VERSIONS})"))
    for key, kind in (("parameters", dict), ("checksum", str)):
        if not isinstance(meta.get(key), kind):
            raise ValueError(f"{path}: metadata field {key!r} must be a {kind.__name__}, got "
                             f"{type(meta.get(key)).__name__}")
    for key, entry in meta["parameters"].items():
        if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
                and isinstance(entry.get("shape"), list)
                and all(isinstance(d, int) and d >= 0 for d in entry["shape"])):
            raise ValueError(f"{path}: parameter {key!r} is listed as {entry!r}, not as "
                             f"{{'shape': [non-negative ints], 'dtype': str}}")
    if "metadata" in meta and not isinstance(meta["metadata"], dict):
        raise ValueError(f"{path}: metadata field 'metadata' must be a dict")
    return meta


def _check_members(archive, listed, path):
    """The stored arrays are the ones the header lists, uncompressed, with the listed
    shape and dtype (read from each array's own header, before its data)."""
    stored = {name.removesuffix(".npy"): name for name in archive.namelist()}
    stored.pop(_META_KEY, None)
    if set(stored) != set(listed):
        raise ValueError(f"{path}: the archive holds {sorted(stored)} but its metadata lists "
                         f"{sorted(listed)}")
    for key, name in stored.items():
        info = archive.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{path}: array {key!r} is compressed; npdistill writes (and "
                             f"reads) uncompressed archives only")
        with archive.open(name) as f:
            try:
                version = np.lib.format.read_magic(f)
                reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                shape, _, dtype = reader(f)
            except ValueError as exc:
                raise ValueError(f"{path}: array {key!r} has no valid .npy header: {exc}") from exc
        entry = listed[key]
        if list(shape) != entry["shape"] or dtype.str != entry["dtype"]:
            raise ValueError(f"{path}: array {key!r} is stored as {shape} {dtype.str} but listed "
                             f"as {tuple(entry['shape'])} {entry['dtype']}")
        if dtype.itemsize * int(np.prod(shape)) > info.file_size:
            raise ValueError(f"{path}: array {key!r} declares more data than the file holds")


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


def load_model(path):
    """Load a model written by ``Sequential.save``; verifies format, schema and checksum."""
    arrays, meta = read_archive(path)
    return model_from_archive(arrays, meta, os.fspath(path))
