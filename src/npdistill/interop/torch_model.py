"""TorchModel: a live torch nn.Module as a Passes (see npdistill.interop)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from .._checks import check_clip, check_float_array, check_float_dtype, check_images
from ..nn.archive import archive_checksum
from ..nn.passes import Passes
from .convert import require_torch


class TorchModel(Passes):
    """A live ``torch.nn.Module`` as a ``Passes``: the attacks, ``jacobian``, the metrics
    and ``distributed.map_attack`` run on it unchanged.

    module : the net, in eval mode (``module.eval()``), returning logits (N, K); its
        parameters must all be float32 or all float64, which sets ``dtype``
    clip : the box the module's inputs live in (default [0, 1]): images given to the
        metrics must lie in it and an attack's clip box inside it
    preprocessing : optional (mean, std), one number or one per channel: the module sees
        (x - mean) / std, so attacks, budgets and gradients stay in ``clip``'s pixel space
        (as ``layers.Normalize`` does for a Sequential)
    device : where the module runs ("cpu", "cuda", "cuda:1", a torch.device); it is not
        moved: it must already be there
    dtype : float32 or float64 if you want it checked against the module's parameters

    ``forward`` runs the module with autograd recording, ``backward`` asks autograd for
    the input's vector-Jacobian products (never the parameters': nothing is written to
    their ``.grad``). Several seeds per sample (the exact Jacobian's K one-hot seeds)
    come from one forward pass. ``num_classes`` is read from the module's output the
    first time it sees images.
    """

    def __init__(self, module: Any, clip: tuple[float, float] = (0.0, 1.0),
                 preprocessing: tuple[Any, Any] | None = None, device: Any = "cpu",
                 dtype: npt.DTypeLike | None = None) -> None:
        torch = self._torch = require_torch("TorchModel")
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        training = [name or type(module).__name__ for name, sub in module.named_modules()
                    if sub.training]
        if training:
            raise ValueError(f"module is in training mode ({_listed(training)}): its dropout "
                             f"and batch norm would not be the deployed net's; call "
                             f"module.eval() first")
        self.device = torch.device(device)
        kinds = {p.dtype for p in module.parameters()} | {
            b.dtype for b in module.buffers() if b.is_floating_point()}
        if len(kinds) > 1 or kinds - {torch.float32, torch.float64}:
            raise TypeError(f"module's parameters and buffers must all be float32 or all "
                            f"float64, got {sorted(map(str, kinds))}: call module.float() "
                            f"or module.double()")
        own = np.dtype(np.float64) if kinds == {torch.float64} else np.dtype(np.float32)
        if dtype is not None and check_float_dtype(dtype) != own:
            raise TypeError(f"dtype is {np.dtype(dtype)} but module computes in {own}: "
                            f"call module.{'double' if own == np.float32 else 'float'}() "
                            f"or leave dtype out")
        elsewhere = sorted({str(t.device) for t in (*module.parameters(), *module.buffers())
                            if t.device != self.device})
        if elsewhere:
            raise ValueError(f"module is on {', '.join(elsewhere)} but device is "
                             f"{self.device}: move it with module.to({str(self.device)!r})")
        self.module, self.dtype = module, own
        self._tdtype = torch.float64 if own == np.float64 else torch.float32
        self.clip = check_clip(clip)
        self.preprocessing = None if preprocessing is None else _mean_std(preprocessing)
        self.num_classes: int | None = None
        self._shape: tuple[int, ...] | None = None     # the sample shape last checked
        self._x = self._z = None                        # the last forward's input and logits

    def __repr__(self) -> str:
        return (f"TorchModel({type(self.module).__name__}, clip={self.clip}, "
                f"dtype={self.dtype.name}, device={self.device})")

    def __getstate__(self) -> dict[str, Any]:           # the autograd graph does not pickle
        state = dict(self.__dict__, _x=None, _z=None)
        del state["_torch"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _torch=require_torch("TorchModel"))

    def copy(self) -> TorchModel:
        """A TorchModel over a deep copy of the module (same weights, own storage)."""
        import copy
        return TorchModel(copy.deepcopy(self.module), self.clip, self.preprocessing,
                          self.device)

    def checksum(self) -> str:
        """sha256 of the module's state_dict and of what this wrapper adds (clip,
        preprocessing): the same for the same net, as Sequential.checksum."""
        arrays = {name: t.detach().cpu().numpy() for name, t in self.module.state_dict().items()}
        return archive_checksum(arrays, {"clip": list(self.clip), "preprocessing": None if
                                         self.preprocessing is None else
                                         [v.tolist() for v in self.preprocessing]})

    def weight_layers(self) -> list[Any]:
        """The module's ``nn.Conv2d`` and ``nn.Linear`` layers in the order it registers
        them, each as a ``params`` dict {"W", "b"} laid out as npdistill stores them
        (Conv2D's (F, C / groups, kh, kw), Dense's transposed (in, out); a missing bias
        reads as zeros): assigning an array to ``params["W"]`` or ``params["b"]`` writes
        it into the module. What weight mutation (defenses.mutate) changes."""
        nn = self._torch.nn
        return [_TorchWeights(self._torch, m) for m in self.module.modules()
                if isinstance(m, (nn.Conv2d, nn.Linear))]

    # -- the Passes protocol ---------------------------------------------------------------
    def check_input(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
        """x if it is a non-empty float array of the module's dtype that the module takes
        (tried on one sample the first time a sample shape comes); else an error."""
        check_float_array(x, "x", dtype=self.dtype)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"x must be a non-empty batch (N, ...), got shape {x.shape}")
        if x.shape[1:] != self._shape:
            channels = max(len(v) for v in self.preprocessing or ((),))
            if channels > 1 and (x.ndim < 3 or x.shape[1] != channels):
                raise ValueError(f"preprocessing has {channels} channels but x has shape "
                                 f"{x.shape} (N, C, ...)")
            torch = self._torch
            try:
                with torch.no_grad():
                    z = self.module(self._prepared(self._tensor(x[:1])))
            except Exception as exc:              # torch's errors are RuntimeError, mostly
                raise ValueError(f"x of shape {x.shape} does not fit the module: "
                                 f"{type(exc).__name__}: {exc}") from exc
            if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] != 1:
                raise ValueError(f"module must return logits (N, K) for x (N, ...), returned "
                                 f"{getattr(z, 'shape', type(z).__name__)} for 1 sample")
            self.num_classes, self._shape = int(z.shape[1]), x.shape[1:]
        return x

    def check_images(self, x: npt.NDArray[np.floating], name: str = "x",
                     box: tuple[float, float] | None = None) -> npt.NDArray[np.floating]:
        """x if it is a non-empty batch of images in the model's clip box, or in an
        attack's box ``box`` (which must lie inside the model's), that the module takes."""
        lo, hi = self.clip
        if box is not None and (box[0] < lo or box[1] > hi):
            raise ValueError(f"the clip box [{box[0]:g}, {box[1]:g}] reaches outside the "
                             f"module's input range clip=[{lo:g}, {hi:g}]: pass clip=({lo:g}, "
                             f"{hi:g}) or a box inside it")
        check_images(x, name, dtype=self.dtype, box=(lo, hi) if box is None else box)
        return self.check_input(x)

    def forward(self, x: npt.NDArray[np.floating],
                training: bool = False) -> npt.NDArray[np.floating]:
        """Logits (N, K) of x, with autograd recording for ``backward``."""
        if training:
            raise ValueError("TorchModel runs its module in eval mode (training=False); train "
                             "a PyTorch module with PyTorch")
        self._x = self._z = None                       # free the last graph first
        xt = self._tensor(x).requires_grad_(True)
        with self._torch.enable_grad():
            z = self.module(self._prepared(xt))
        self._x, self._z = xt, z
        return self._numpy(z)

    def backward(self, dlogits: npt.NDArray[np.floating], param_grads: bool = True,
                 input_grad: bool = True,
                 rows: npt.NDArray[np.integer] | None = None) -> Any:
        """dL/dx through the last forward for dL/dlogits (N, K), or S seeds per sample
        stacked seed-major (S * N rows), or for the samples ``rows`` only. Input gradients
        only: pass param_grads=False."""
        if param_grads:
            raise ValueError("TorchModel gives input gradients only (param_grads=False): "
                             "train a PyTorch module with PyTorch")
        if self._z is None:
            raise ValueError("backward needs a forward pass first: call model.logits(x) on "
                             "the batch, then backward")
        if not input_grad:
            return None
        n, k = self._z.shape
        seeds = np.asarray(dlogits)
        if rows is not None:
            rows = np.asarray(rows)
            if rows.ndim != 1 or rows.dtype.kind not in "iu" or len(rows) != len(seeds):
                raise ValueError(f"rows must be a 1-d integer array with one entry per row of "
                                 f"dlogits ({len(seeds)}), got {rows.dtype} of shape "
                                 f"{rows.shape}")
            full = np.zeros((n, k), self.dtype)
            full[rows] = seeds
            return self._vjp(full[None])[0][rows]
        if seeds.ndim != 2 or seeds.shape[1] != k or len(seeds) % n:
            raise ValueError(f"dlogits must have shape (S * {n}, {k}) for the last forward's "
                             f"{n} samples, got {seeds.shape}")
        out = self._vjp(seeds.reshape(len(seeds) // n, n, k))
        return out.reshape(len(seeds), *out.shape[2:])

    def batched_logits(self, x: npt.NDArray[np.floating],
                       batch_size: int = 512) -> npt.NDArray[np.floating]:
        """Logits of x ``batch_size`` samples at a time, without autograd."""
        with self._torch.no_grad():
            return super().batched_logits(x, batch_size)

    # -- helpers -----------------------------------------------------------------------------
    def _tensor(self, x):
        return self._torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self._tdtype)

    def _numpy(self, t):
        return t.detach().cpu().numpy().astype(self.dtype, copy=False)

    def _prepared(self, xt):
        if self.preprocessing is None:
            return xt
        mean, std = (self._torch.as_tensor(v, dtype=self._tdtype, device=self.device)
                     .reshape(1, -1, *([1] * (xt.ndim - 2))) for v in self.preprocessing)
        return (xt - mean) / std

    def _vjp(self, seeds):
        """(S, N, ...) input gradients for seeds (S, N, K), one autograd call per seed
        through the retained graph. (Batching the seeds with is_grads_batched=True, i.e.
        vmap, was slower on the CPU: 0.39 s against 0.31 s for 32 MNIST Jacobians.)"""
        torch = self._torch
        return np.stack([self._numpy(torch.autograd.grad(self._z, self._x, s,
                                                         retain_graph=True)[0])
                         for s in self._tensor(seeds)])


class _TorchWeights:
    """A Conv2d's or Linear's weights as ``params``, written through to the module."""

    def __init__(self, torch, module):
        self.module, self.params = module, _WrittenThrough(torch, module)


class _WrittenThrough(dict):
    def __init__(self, torch, module):
        W = module.weight.detach().cpu().numpy()
        bias = (np.zeros(len(W), W.dtype) if module.bias is None
                else module.bias.detach().cpu().numpy())
        super().__init__(W=(W if W.ndim == 4 else W.T).copy(), b=bias.copy())
        self._torch, self._module = torch, module

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        target = self._module.weight if key == "W" else self._module.bias
        if target is None:                       # no bias: its zeros stay zeros
            return
        value = value if key == "b" or value.ndim == 4 else value.T
        with self._torch.no_grad():
            target.copy_(self._torch.from_numpy(np.ascontiguousarray(value)))


def _listed(names: Sequence[str], most: int = 4) -> str:
    more = len(names) - most
    return ", ".join(names[:most]) + (f" and {more} more" if more > 0 else "")


def _mean_std(preprocessing):
    try:
        mean, std = preprocessing
    except (TypeError, ValueError):
        raise TypeError(f"preprocessing must be a pair (mean, std), got "
                        f"{preprocessing!r}") from None
    mean, std = (np.atleast_1d(np.asarray(v, np.float64)) for v in (mean, std))
    for name, v in (("mean", mean), ("std", std)):
        if v.ndim != 1 or not np.isfinite(v).all():
            raise ValueError(f"preprocessing {name} must be a finite number or one per "
                             f"channel, got {v}")
    if (std <= 0).any():
        raise ValueError(f"preprocessing std must be positive, got {std}")
    return mean, std
