"""The one finite-difference checker every gradient test uses (float64, central differences)."""
import numpy as np


def numerical_jacobian(f, x, eps=1e-6, entries=None):
    """d f() / d x by central differences: shape f().shape + x.shape, or with ``entries``
    (flat indices into x) f().shape + (len(entries),): those columns only.

    Perturbs the float64 array ``x`` in place, one entry at a time.
    """
    assert x.dtype == np.float64, "gradient checks run in float64"
    flat = x.reshape(-1)
    assert np.shares_memory(flat, x), "x must be contiguous so that it is perturbed in place"
    columns = []
    for i in range(flat.size) if entries is None else entries:
        old = flat[i]
        flat[i] = old + eps
        f_plus = np.asarray(f(), dtype=np.float64)
        flat[i] = old - eps
        f_minus = np.asarray(f(), dtype=np.float64)
        flat[i] = old
        columns.append((f_plus - f_minus) / (2 * eps))
    shape = x.shape if entries is None else (len(entries),)
    return np.stack(columns, axis=-1).reshape(columns[0].shape + shape)


def numerical_gradient(f, x, eps=1e-6):
    """d f() / d x of a scalar f."""
    return numerical_jacobian(f, x, eps)


def gradcheck(f, x, analytic, eps=1e-6, rtol=1e-5, atol=1e-7, entries=None, seed=0):
    """Assert that ``analytic`` equals the central-difference gradient of scalar f() w.r.t.
    x: at every entry, or at ``entries`` of them drawn at random (``seed``) where x has
    more (each entry costs two calls of f)."""
    if entries is None or entries >= x.size:
        numeric = numerical_gradient(f, x, eps)
        np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)
        return
    picked = np.sort(np.random.default_rng(seed).choice(x.size, entries, replace=False))
    numeric = numerical_jacobian(f, x, eps, picked)
    np.testing.assert_allclose(np.asarray(analytic).reshape(-1)[picked], numeric, rtol=rtol,
                               atol=atol)
