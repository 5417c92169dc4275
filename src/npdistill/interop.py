"""PyTorch models in and out. torch is optional: only ``to_torch`` imports it.

- ``load_state_dict(model, mapping)``: a PyTorch ``state_dict`` (or any mapping of arrays
  in PyTorch's naming and layout: ``torch.load`` of one, an ``.npz`` of one) onto a
  Sequential of the same architecture. The mapping's weight/bias pairs are matched to the
  model's Conv2D and Dense layers in order (a state_dict keeps its module's registration
  order), so any module whose layers are registered in the order they run — an
  ``nn.Sequential``, or a Papernot-style module with conv1, conv2, ..., fc1, fc2 — loads
  into the architecture it implements. Conv2d weights are (out, in, k, k) in both
  libraries; Linear weights are (out, in) in PyTorch and (in, out) here.
- ``state_dict(model)``: the model's parameters in PyTorch's naming (``nn.Sequential``
  indices) and layout, as NumPy arrays.
- ``from_torch(module)``: an ``nn.Sequential`` (nested ones flattened) of Conv2d (stride 1,
  no dilation or groups, padding 0 or "same"), Linear, ReLU, MaxPool2d (stride = kernel),
  Flatten and Dropout, as a Sequential holding its weights. Read through the modules'
  attributes, so anything shaped like those modules converts.
- ``to_torch(model)``: the model as an ``nn.Sequential`` with the same weights (Normalize
  becomes a small module doing the same).
- ``TorchModel(module)``: any live ``nn.Module`` (a ResNet, BatchNorm, strided or grouped
  convolutions, a model zoo's net) as a ``Passes``: torch runs the forward pass and its
  autograd the vector-Jacobian products, NumPy in and out, so every attack, ``jacobian``,
  the metrics and ``distributed.map_attack`` take it as they take a Sequential. Nothing
  is converted; what npdistill's own kernels add (speed, the CUDA backend, weight
  mutation) needs ``from_torch``.

Flatten orders features (C, H, W) in both libraries, so Dense weights after a Flatten need
no permutation.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from ._checks import check_clip, check_float_array, check_float_dtype, check_images
from .nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Normalize, ReLU
from .nn.model import Sequential
from .nn.passes import Passes


def _torch(what):
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"{what} needs PyTorch: pip install 'npdistill[torch]'") from exc
    return torch


def _array(value, name):
    """A NumPy array from a numpy array, a torch tensor or anything with __array__."""
    if hasattr(value, "detach"):                       # a torch tensor (maybe on a GPU)
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} is not an array: {type(value).__name__}") from exc


def _weight_layers(model):
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be an npdistill Sequential, got {type(model).__name__}")
    return [(i, layer) for i, layer in enumerate(model.layers)
            if isinstance(layer, (Conv2D, Dense))]


def _to_ours(layer, weight):
    return weight.T if isinstance(layer, Dense) else weight


def state_dict(model: Sequential) -> dict[str, np.ndarray]:
    """{"<index>.weight": ..., "<index>.bias": ...} in PyTorch's layout (NumPy arrays)."""
    out = {}
    for i, layer in _weight_layers(model):
        out[f"{i}.weight"] = np.ascontiguousarray(_to_ours(layer, layer.params["W"]))
        out[f"{i}.bias"] = layer.params["b"].copy()
    return out


def _pairs(mapping):
    """[(prefix, weight, bias)] of the mapping's weight/bias entries, in its order."""
    if not hasattr(mapping, "keys"):
        raise TypeError(f"mapping must map names to arrays (a state_dict), got "
                        f"{type(mapping).__name__}")
    pairs, seen = [], set()
    for key in mapping.keys():
        prefix, _, kind = str(key).rpartition(".")
        if kind not in ("weight", "bias"):
            raise ValueError(f"state_dict entry {key!r} is neither a weight nor a bias (batch "
                             f"norm and other layers have no counterpart here)")
        if prefix in seen:
            continue
        seen.add(prefix)
        if f"{prefix}.weight" not in mapping or f"{prefix}.bias" not in mapping:
            raise ValueError(f"state_dict layer {prefix!r} needs a weight and a bias")
        pairs.append((prefix, _array(mapping[f"{prefix}.weight"], f"{prefix}.weight"),
                      _array(mapping[f"{prefix}.bias"], f"{prefix}.bias")))
    return pairs


def load_state_dict(model: Sequential, mapping: Mapping[str, Any]) -> Sequential:
    """Put a PyTorch-layout state_dict's weights into ``model`` (in place, in the model's
    dtype) and return it. Layers are matched in order; every shape is checked."""
    targets = _weight_layers(model)
    pairs = _pairs(mapping)
    if len(pairs) != len(targets):
        raise ValueError(f"the state_dict has {len(pairs)} layers with weights "
                         f"({', '.join(p for p, _, _ in pairs)}) but the model "
                         f"{len(targets)} (Conv2D and Dense)")
    params = dict(model.params)
    for (i, layer), (prefix, weight, bias) in zip(targets, pairs):
        W = _to_ours(layer, weight)
        for name, value, source in (("W", W, f"{prefix}.weight"), ("b", bias, f"{prefix}.bias")):
            expected = layer.params[name].shape
            if value.shape != expected:
                shown = value.shape[::-1] if name == "W" and isinstance(layer, Dense) else \
                    value.shape
                wanted = expected[::-1] if name == "W" and isinstance(layer, Dense) else expected
                raise ValueError(f"{source} has shape {shown} but layer {i} ({layer!r}) needs "
                                 f"{wanted} in PyTorch's layout")
            if not np.isfinite(value).all():
                raise ValueError(f"{source} holds NaN or infinite values")
            params[f"{i}.{name}"] = np.ascontiguousarray(value, dtype=model.dtype)
    model.set_params(params)
    return model


def _children(module):
    """The leaf modules of a (nested) sequential container, in order."""
    children = list(module.children()) if hasattr(module, "children") else None
    if not children:
        return [module]
    return [leaf for child in children for leaf in _children(child)]


def _pair(value, name, what):
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(set(pair)) != 1:
        raise ValueError(f"{what}: {name} {pair} is not square; npdistill's layers are")
    return pair[0]


def _converted(module, index, dtype):
    kind, what = type(module).__name__, f"module {index} ({type(module).__name__})"
    if kind == "Conv2d":
        k = _pair(module.kernel_size, "kernel_size", what)
        if _pair(module.stride, "stride", what) != 1 or _pair(module.dilation, "dilation",
                                                                what) != 1 or module.groups != 1:
            raise ValueError(f"{what}: only stride 1, dilation 1 and groups 1 convert")
        padding = module.padding
        if padding in ("valid", 0, (0, 0)):
            padding = "valid"
        elif padding == "same" or (k % 2 == 1 and _pair(padding, "padding", what) == k // 2):
            padding = "same"
        else:
            raise ValueError(f"{what}: padding {padding!r} is neither 0 nor 'same'")
        if module.bias is None:
            raise ValueError(f"{what}: a convolution without bias has no counterpart")
        return Conv2D(module.in_channels, module.out_channels, k, padding=padding, dtype=dtype)
    if kind == "Linear":
        if module.bias is None:
            raise ValueError(f"{what}: a Linear without bias has no counterpart")
        return Dense(module.in_features, module.out_features, dtype=dtype)
    if kind == "ReLU":
        return ReLU()
    if kind == "MaxPool2d":
        size = _pair(module.kernel_size, "kernel_size", what)
        stride = size if module.stride is None else _pair(module.stride, "stride", what)
        if stride != size or _pair(module.padding, "padding", what) != 0 \
                or _pair(module.dilation, "dilation", what) != 1 or module.ceil_mode:
            raise ValueError(f"{what}: only non-overlapping pooling (stride = kernel, no "
                             f"padding) converts")
        return MaxPool2D(size)
    if kind == "Flatten":
        if getattr(module, "start_dim", 1) != 1 or getattr(module, "end_dim", -1) != -1:
            raise ValueError(f"{what}: only Flatten(start_dim=1) converts")
        return Flatten()
    if kind == "Dropout":
        return Dropout(float(module.p))
    if kind == "Normalize":                  # what to_torch writes
        return Normalize(list(map(float, _array(module.mean, "mean").reshape(-1))),
                         list(map(float, _array(module.std, "std").reshape(-1))))
    raise TypeError(f"{what} has no npdistill counterpart (Conv2d, Linear, ReLU, MaxPool2d, "
                    f"Flatten, Dropout convert); for another module, build the Sequential it "
                    f"implements and use load_state_dict(model, module.state_dict())")


def from_torch(module: Any, dtype: npt.DTypeLike = np.float32) -> Sequential:
    """The Sequential a PyTorch ``nn.Sequential`` implements, holding its weights."""
    leaves = _children(module)
    layers = [_converted(leaf, i, dtype) for i, leaf in enumerate(leaves)]
    model = Sequential(layers)
    mapping = {}
    for i, leaf in enumerate(leaves):
        if isinstance(layers[i], (Conv2D, Dense)):
            mapping[f"{i}.weight"], mapping[f"{i}.bias"] = leaf.weight, leaf.bias
    return load_state_dict(model, mapping)


def to_torch(model: Sequential) -> Any:
    """``model`` as a torch ``nn.Sequential`` with the same weights (needs torch)."""
    torch = _torch("to_torch")
    nn = torch.nn
    modules = []
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            modules.append(nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                     padding=0 if layer.padding == "valid" else "same"))
        elif isinstance(layer, Dense):
            modules.append(nn.Linear(layer.in_features, layer.out_features))
        elif isinstance(layer, ReLU):
            modules.append(nn.ReLU())
        elif isinstance(layer, MaxPool2D):
            modules.append(nn.MaxPool2d(layer.size))
        elif isinstance(layer, Flatten):
            modules.append(nn.Flatten())
        elif isinstance(layer, Dropout):
            modules.append(nn.Dropout(layer.rate))
        elif isinstance(layer, Normalize):
            modules.append(_torch_normalize(nn, torch)(layer.mean, layer.std))
    net = nn.Sequential(*modules).to(torch.float64 if model.dtype == np.float64 else torch.float32)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict(model).items()})
    return net.eval()


def _torch_normalize(nn, torch):
    class Normalize(nn.Module):
        """(x - mean[c]) / std[c], as npdistill's Normalize."""

        def __init__(self, mean, std):
            super().__init__()            # constants, not state: no state_dict entries
            self.mean = torch.tensor(mean, dtype=torch.float64).reshape(1, -1, 1, 1)
            self.std = torch.tensor(std, dtype=torch.float64).reshape(1, -1, 1, 1)

        def forward(self, x):
            return (x - self.mean.to(x)) / self.std.to(x)

    return Normalize


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
        torch = self._torch = _torch("TorchModel")
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
        self.__dict__.update(state, _torch=_torch("TorchModel"))

    def copy(self) -> TorchModel:
        """A TorchModel over a deep copy of the module (same weights, own storage)."""
        import copy
        return TorchModel(copy.deepcopy(self.module), self.clip, self.preprocessing,
                          self.device)

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
