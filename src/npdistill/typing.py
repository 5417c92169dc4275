"""Type aliases of npdistill's public API, for annotations (as ``numpy.typing`` is NumPy's).

- ``Images``: a batch of float images, (N, C, H, W), pixels in [0, 1] unless a clip box
  says otherwise (float32 or float64). ``Labels``: (N,) integer classes, a NumPy array
  (the library refuses lists rather than guess their dtype).
- ``ProgressArg``: what every long call takes as ``progress=`` (npdistill.progress):
  True, False, None or a callable given a ``ProgressEvent``.
- ``Model``: what the attacks, the Jacobian and the metrics run on — any
  ``npdistill.Passes`` (a ``Sequential``, a converted PyTorch net, a live one behind
  ``interop.TorchModel``).
"""
from __future__ import annotations

import os
from typing import Literal, TypeAlias, Union

import numpy as np
import numpy.typing as npt

from .nn.passes import Passes
from .progress import ProgressArg

Images: TypeAlias = npt.NDArray[np.floating]
Labels: TypeAlias = npt.NDArray[np.integer]
FloatArray: TypeAlias = npt.NDArray[np.floating]
Clip: TypeAlias = tuple[float, float]
Norm: TypeAlias = Union[Literal["inf", "linf", "l2", "2", 2], float]
PathArg: TypeAlias = Union[str, "os.PathLike[str]"]
Model: TypeAlias = Passes

__all__ = ["Clip", "FloatArray", "Images", "Labels", "Model", "Norm", "PathArg", "ProgressArg"]
