"""train()'s hooks, ``batch_transform`` and ``penalty``: how the run's config names them,
and the checks of what they return (a hook's bad value is named as the hook's error, not
taken for the training's divergence)."""
import numpy as np


def describe(hook):
    """What the training config records about a hook: its config(), else its name."""
    if hook is None:
        return None
    if hasattr(hook, "config"):
        return hook.config()
    return getattr(hook, "__qualname__", type(hook).__qualname__)


def penalty_value(value, where):
    """The penalty hook's value as a float, or an error that names the hook: a NaN or
    infinite penalty is the hook's doing, not a divergence of the training."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"the penalty hook must return a number, got {type(value).__name__} "
                        f"{str(value)[:40]!r} ({where})")
    if not np.isfinite(value):
        raise ValueError(f"the penalty hook returned {float(value)} ({where}): a penalty must "
                         f"be finite")
    return float(value)


def transformed(hook, model, x, y, rng):
    out = hook(model, x, y, rng)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(f"batch_transform must return a pair (x, y), got {type(out).__name__}")
    x_new, y_new = out
    if not isinstance(x_new, np.ndarray) or x_new.dtype != x.dtype or x_new.shape[1:] != x.shape[1:]:
        raise ValueError(f"batch_transform must return x of shape (B, {', '.join(map(str, x.shape[1:]))})"
                         f" {x.dtype}, got {getattr(x_new, 'shape', None)} "
                         f"{getattr(x_new, 'dtype', type(x_new).__name__)}")
    if not isinstance(y_new, np.ndarray) or len(y_new) != len(x_new) or y_new.shape[1:] != y.shape[1:]:
        raise ValueError(f"batch_transform must return y matching x's {len(x_new)} rows and "
                         f"shaped like y {y.shape[1:]}, got {getattr(y_new, 'shape', None)}")
    if not np.isfinite(x_new).all():
        raise ValueError("batch_transform returned non-finite images (NaN or inf): the "
                         "hook's, not the training's")
    return x_new, y_new
