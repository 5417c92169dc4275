"""Where things run: the one module above ``kernels`` that reads the active backend.

``train``, the attacks, ``jacobian``, the metrics and the mutation detector ask it and
never read the backend themselves:

- ``passes(model)``: the passes to run a model's inference and input gradients with —
  the model itself on a CPU backend, its device view (``cuda.passes.DevicePasses``, the
  same ``Passes`` interface) with "cuda". A model that is not a ``Sequential`` (a user's
  own ``Passes``) runs its own passes everywhere.
- ``device_loop(attack, passes)``: the attack's whole loop on the device, if the backend
  has one (``"jsma"``, ``"cw_l2"``), bound to the model's device view; else None.
- ``device_trainer(model, optimizer, x, y)``: train()'s epochs on the device, or None.

The CUDA modules are imported here, and only when the backend is "cuda": importing
npdistill never imports numba, and ``nn`` never imports ``cuda``.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy.typing as npt

from . import kernels
from .nn.model import Sequential
from .typing import Images, Model


def on_device() -> bool:
    """True when the active backend keeps arrays on a GPU (it is "cuda")."""
    return kernels.backend() == "cuda"


def passes(model: Model) -> Model:
    """``model``'s passes on the active backend (a ``Passes``)."""
    if not on_device() or not isinstance(model, Sequential):
        return model
    from .cuda.passes import DevicePasses
    return DevicePasses(model)


DEVICE_LOOPS = ("jsma", "cw_l2")      # the attacks with a loop of npdistill.cuda.attacks


def device_loop(attack: str, passes: Model) -> Callable[..., Any] | None:
    """The device loop of ``attack`` (one of DEVICE_LOOPS) bound to ``passes``' device
    model, or None where ``passes`` runs on the host.

    Called as the host loop of the attack is; see npdistill.cuda.attacks.
    """
    if attack not in DEVICE_LOOPS:       # a typo would otherwise run on the host, silently
        raise ValueError(f"no device loop is called {attack!r}: expected one of {DEVICE_LOOPS}")
    net = getattr(passes, "device_model", None)
    if net is None:
        return None
    from .cuda import attacks
    loops: dict[str, Callable[..., Any]] = {"jsma": attacks.jsma_chunk,
                                            "cw_l2": attacks.cw_l2_round}
    return functools.partial(loops[attack], net)


def device_trainer(model: Sequential, optimizer: Any, x: Images,
                   y: npt.NDArray[Any]) -> Any:
    """A trainer whose ``epoch`` runs on the device (cuda.trainer.DeviceTrainer), or None."""
    if not on_device():
        return None
    from .cuda.trainer import DeviceTrainer
    return DeviceTrainer(model, optimizer, x, y)
