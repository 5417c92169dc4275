"""SGD with momentum and step decay of the learning rate."""
import numpy as np

from .._checks import check_positive, check_probability


class SGD:
    """v <- momentum * v - lr_e * g ;  p <- p + v, with lr_e = lr * decay_factor ** (epoch // decay_every).

    Papernot et al. (2016) train both nets with momentum SGD and halve the
    learning rate every 10 epochs (the defaults here). ``lr_factors`` ({parameter key:
    factor}) multiplies the learning rate of single parameters (train() uses it for the
    logits layer at temperature T).
    """

    def __init__(self, lr, momentum=0.0, decay_every=10, decay_factor=0.5, lr_factors=None):
        check_positive(lr, "lr")
        self.lr_factors = {key: check_positive(value, f"lr_factors[{key!r}]")
                           for key, value in (lr_factors or {}).items()}
        check_probability(momentum, "momentum", one=False)
        check_positive(decay_every, "decay_every", integer=True)
        check_positive(decay_factor, "decay_factor")
        self.lr, self.momentum = float(lr), float(momentum)
        self.decay_every, self.decay_factor = int(decay_every), float(decay_factor)
        self.velocity = {}

    def lr_at(self, epoch):
        """Learning rate of the (0-based) ``epoch``."""
        return self.lr * self.decay_factor ** (epoch // self.decay_every)

    def lr_for(self, key, epoch):
        """Learning rate of parameter ``key`` in ``epoch``: lr_at(epoch) x its factor."""
        return self.lr_at(epoch) * self.lr_factors.get(key, 1.0)

    def step(self, params, grads, epoch):
        """Update the arrays of ``params`` in place from ``grads`` (same keys)."""
        for key, p in params.items():
            v = self.velocity.get(key)
            if v is None:
                v = self.velocity[key] = np.zeros_like(p)
            momentum_step(p, v, grads[key], self.lr_for(key, epoch), self.momentum)


def momentum_step(p, v, g, lr, momentum):
    """One momentum-SGD update in place: v = momentum * v - lr * g; p += v (p's dtype).

    The one definition of the update: the CUDA kernel (cuda/elementwise.sgd_update) is
    tested equal to it."""
    v *= p.dtype.type(momentum)
    v -= p.dtype.type(lr) * g
    p += v
