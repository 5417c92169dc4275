"""PyTorch models in and out. torch is optional: only ``to_torch`` and ``TorchModel``
import it.

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
  the metrics, the mutation detector and ``distributed.map_attack`` take it as they take
  a Sequential. Nothing is converted; what npdistill's own kernels add (speed, the CUDA
  backend, training) needs ``from_torch``.

Flatten orders features (C, H, W) in both libraries, so Dense weights after a Flatten need
no permutation.
"""
from .convert import from_torch, load_state_dict, state_dict, to_torch
from .torch_model import TorchModel

__all__ = ["TorchModel", "from_torch", "load_state_dict", "state_dict", "to_torch"]
