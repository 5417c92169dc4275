"""Input checks at the public boundary: clear errors naming what was expected and what came."""
from __future__ import annotations

import numbers
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _describe(a):
    return f"shape {a.shape} and dtype {a.dtype}"


def as_array(x: object, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    return x


def check_float_array(x, name, *, ndim=None, dtype=None, finite=True):
    """A float32/float64 array of the given rank (int or tuple of ints), optionally of one dtype."""
    x = as_array(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != np.dtype(dtype):
        raise TypeError(f"{name} has dtype {x.dtype} but {np.dtype(dtype)} was expected "
                        f"(cast it with .astype(np.{np.dtype(dtype).name}), or convert the "
                        f"model with model.astype(np.{x.dtype.name}))")
    if ndim is not None:
        ranks = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in ranks:
            raise ValueError(f"{name} must have rank {' or '.join(map(str, ranks))}, "
                             f"got {_describe(x)}")
    if finite and not np.isfinite(x).all():
        bad = np.size(x) - np.count_nonzero(np.isfinite(x))
        raise ValueError(f"{name} contains {bad} NaN or infinite values")
    return x


def check_float_dtype(dtype, name="dtype"):
    """float32 or float64 (anything numpy.dtype takes for them), as a numpy dtype."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}")
    return resolved


def check_images(x, name="x", *, dtype=None, box=None):
    """A non-empty batch of float NCHW images: pixels in [0, 1], or in the clip box
    ``box`` = (low, high) of an attack."""
    check_float_array(x, name, ndim=4, dtype=dtype)
    if len(x) == 0:
        raise ValueError(f"{name} holds no images (shape {x.shape})")
    lo, hi = (0.0, 1.0) if box is None else box
    if x.min() < lo or x.max() > hi:
        where = "hold pixels in [0, 1]" if box is None else f"lie in the clip box [{lo:g}, {hi:g}]"
        raise ValueError(f"{name} must {where}, got values in [{x.min():.4g}, {x.max():.4g}]")
    return x


def check_labels(y: object, n: int, num_classes: int | None,
                 name: str = "y") -> npt.NDArray[np.int64]:
    """Integer class labels (n,) in [0, num_classes), returned as int64."""
    check_classes(num_classes)
    y = as_array(y, name)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer labels, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{name} as integer labels must have shape ({n},), got {y.shape}")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} labels must lie in [0, {num_classes}), got values in "
                         f"[{y.min()}, {y.max()}]")
    return y.astype(np.int64, copy=False)


def check_classes(num_classes: int | None) -> int:
    """The model's number of classes, refused where its output is not class logits."""
    if num_classes is None:
        raise TypeError("the model has no number of classes: its output is not class logits "
                        "(a Sequential must end in a Dense layer, followed at most by ReLU or "
                        "Dropout; another Passes must set num_classes)")
    return num_classes


def check_clip(clip: Any) -> tuple[float, float]:
    """A clip box (low, high) with low < high, as two floats."""
    try:
        lo, hi = (float(v) for v in clip)
    except (TypeError, ValueError):
        raise TypeError(f"clip must be a pair (low, high), got {clip!r}") from None
    if not lo < hi:
        raise ValueError(f"clip must have low < high, got {clip!r}")
    return lo, hi


def check_targets(y, n, num_classes, name="y"):
    """Integer labels (n,) in [0, num_classes) or soft-label rows (n, num_classes) summing to 1."""
    check_classes(num_classes)
    y = as_array(y, name)
    if np.issubdtype(y.dtype, np.integer):
        check_labels(y, n, num_classes, name)
        return y
    if y.dtype in FLOAT_DTYPES:
        if y.shape != (n, num_classes):
            raise ValueError(f"{name} as soft labels must have shape ({n}, {num_classes}), "
                             f"got {y.shape}")
        check_float_array(y, name)
        if n and (y.min() < 0 or not np.allclose(y.sum(axis=1), 1.0, atol=1e-3)):
            raise ValueError(f"{name} soft-label rows must be non-negative and sum to 1")
        return y
    raise TypeError(f"{name} must be integer labels or float soft-label rows, got dtype {y.dtype}")


# -- parameters: one checker per kind, each naming the parameter -------------------------
def check_number(value, name, *, low=None, high=None, low_open=False, high_open=False,
                 integer=False):
    """A finite real (or integer) number in the interval given, as a float (or int).

    Accepts Python and NumPy scalars and exact rationals (Fraction); refuses booleans,
    strings, None and arrays with a TypeError, values outside with a ValueError.
    """
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an integer' if integer else 'a number'}, "
                        f"got {value!r} ({type(value).__name__})")
    value = int(value) if integer else float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    below = low is not None and (value < low or (low_open and value == low))
    above = high is not None and (value > high or (high_open and value == high))
    if below or above:
        raise ValueError(f"{name} must be {_interval(low, high, low_open, high_open)}, "
                         f"got {value!r}")
    return value


def check_numbers(values, name):
    """A list of finite floats from a number or a sequence of numbers (one per channel)."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if isinstance(values, (list, tuple)):
        if not values:
            raise ValueError(f"{name} must hold at least one value")
        return [check_number(v, f"{name}[{i}]") for i, v in enumerate(values)]
    return [check_number(values, name)]


def _interval(low, high, low_open, high_open):
    if high is None:
        if low == 0:
            return "positive" if low_open else "non-negative"
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def check_positive(value, name, *, integer=False):
    """A number (or integer) > 0, finite."""
    return check_number(value, name, low=0, low_open=True, integer=integer)


def check_probability(value, name, *, zero=True, one=True):
    """A number in [0, 1]; ``zero``/``one`` False exclude that end."""
    return check_number(value, name, low=0, high=1, low_open=not zero, high_open=not one)


def check_seed(seed, name="seed", *, generator=False):
    """A seed: a non-negative integer or None (and a numpy Generator when ``generator``)."""
    if seed is None or (generator and isinstance(seed, np.random.Generator)):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        allowed = "a non-negative integer, None" + (" or a numpy Generator" if generator else "")
        raise TypeError(f"{name} must be {allowed}, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed}")
    return int(seed)


def check_pair(data, name):
    """A data set given as a pair (x, y): the pair as a tuple."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        got = f"a {type(data).__name__} of length {len(data)}" \
            if isinstance(data, (tuple, list)) else type(data).__name__
        raise TypeError(f"{name} must be a pair (x, y), got {got}")
    return tuple(data)


def check_choice(value, name, choices):
    """One of ``choices`` (strings compared as given)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


# -- output paths: checked before long work starts, so that none is lost at its end --------
def check_output_file(path, name, suffix=".npz"):
    """A ``suffix`` file that can be written in an existing, writable folder: a Path."""
    path = _as_path(path, name)
    if path.is_dir():
        raise ValueError(f"{name}: {path} is a folder; name a {suffix} file in it")
    if path.suffix != suffix:
        raise ValueError(f"{name} must name a {suffix} file, got {str(path)!r}")
    if not path.parent.is_dir():
        raise ValueError(f"{name}: the folder {path.parent} does not exist (create it first)")
    _check_writable(path.parent, name)
    return path


def check_output_dir(path, name):
    """A folder that exists and is writable, or can be created: a Path (nothing is created)."""
    path = _as_path(path, name)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file, not a folder" if existing == path else \
            f"cannot be created: {existing} is a file"
        raise ValueError(f"{name}: {path} {what}")
    _check_writable(existing, name)
    return path


def _as_path(path, name):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path, got {type(path).__name__}")
    return Path(path)


def _check_writable(folder, name):
    """Write and remove a temporary file in ``folder``: what the real write will need."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(f"{name}: cannot write in {folder}: {exc.strerror or exc}") from None
