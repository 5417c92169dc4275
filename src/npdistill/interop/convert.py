"""Conversions: PyTorch state_dicts and nn.Sequential to and from Sequential (see
npdistill.interop)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import numpy.typing as npt

from ..nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Normalize, ReLU
from ..nn.model import Sequential


def require_torch(what):
    """The torch module, or an ImportError saying that ``what`` needs it."""
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
    torch = require_torch("to_torch")
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
