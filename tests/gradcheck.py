"""The one finite-difference checker every gradient test uses (float64, central differences)."""
import numpy as np


def numerical_jacobian(f, x, eps=1e-6):
    """d f() / d x by central differences: shape f().shape + x.shape.

    Perturbs the float64 array ``x`` in place, one entry at a time.
    """
    assert x.dtype == np.float64, "gradient checks run in float64"
    flat = x.reshape(-1)
    assert np.shares_memory(flat, x), "x must be contiguous so that it is perturbed in place"
    columns = []
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        f_plus = np.asarray(f(), dtype=np.float64)
        flat[i] = old - eps
        f_minus = np.asarray(f(), dtype=np.float64)
        flat[i] = old
        columns.append((f_plus - f_minus) / (2 * eps))
    return np.stack(columns, axis=-1).reshape(columns[0].shape + x.shape)


def numerical_gradient(f, x, eps=1e-6):
    """d f() / d x of a scalar f."""
    return numerical_jacobian(f, x, eps)


def gradcheck(f, x, analytic, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Assert that ``analytic`` equals the central-difference gradient of scalar f() w.r.t. x."""
    numeric = numerical_gradient(f, x, eps)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)
