"""The hot loops, and the dispatch that picks their implementation.

The folder is its map: ``reference/<name>.py`` is the NumPy specification of the kernels
``npdistill._ext.<name>`` (Cython, ext/<name>.pyx) and, for the GPU, ``npdistill.cuda``;
``backends.py`` is the registry (``use("numpy" | "cython" | "cuda")``, ``using(name)``,
``NPDISTILL_BACKEND``; the default is the fastest available: "cuda" where numba-cuda and
an NVIDIA device are present, else "cython", else the NumPy reference with a warning);
one module per kernel family checks and allocates, then calls the active backend:
``products`` (the layers' GEMMs and sums, the same bits on any thread count), ``conv``
(im2col, direct and Winograd passes), ``convolution`` (per layer, the algorithm chosen
and run: ``convolution.choose``), ``relu``, ``pool``, ``saliency`` (JSMA), ``cw``
(Carlini-Wagner); ``isa.py`` caps the direct kernels' instruction set (NPDISTILL_ISA:
avx512 | avx2 | baseline), ``threads.py`` is the thread policy, ``layout.py`` NCHW <->
channels-last, ``provenance.py`` what a run's numbers depend on. With "cuda", the
functions move NumPy arguments to the device and back; ``train`` and the attacks keep
their arrays there (npdistill.placement says how).
"""
from .backends import (BACKENDS, WAIT_POLICY_SET_HERE, available, backend, has, implementation,
                       isa, isa_level, use, using)
from .conv import (DIRECT_MIN_CHANNELS, WINOGRAD_TILE, col2im, direct_correlate,
                   direct_input_gradient, direct_weight_gradient, gemm_weights, im2col,
                   im2col_weight_gradient, layer_weights, winograd_correlate,
                   winograd_input_gradient, winograd_weight_gradient)
from .convolution import CONV_ALGORITHMS, conv_algorithm, use_conv, using_conv
from .cw import CW_L2, CW_LINF, cw_margin, cw_track, cw_update
from .isa import ISAS, use_isa, using_isa
from .layout import channels_last, conv_output_size, empty_nchw, reusable_buffer
from .pool import maxpool_backward, maxpool_forward, maxpool_gather
from .products import column_sums, matmul
from .provenance import environment, summary as environment_summary
from .relu import relu_backward, relu_forward
from .saliency import saliency_pairs
from .threads import BLAS_THREADS, blas_threads

__all__ = ["BACKENDS", "WAIT_POLICY_SET_HERE", "available", "backend", "has", "implementation",
           "use", "using", "ISAS", "isa", "isa_level", "use_isa", "using_isa", "channels_last",
           "conv_output_size", "empty_nchw",
           "reusable_buffer", "im2col", "col2im", "im2col_weight_gradient", "gemm_weights",
           "layer_weights",
           "relu_forward", "relu_backward", "saliency_pairs", "maxpool_forward",
           "maxpool_gather", "maxpool_backward", "CW_L2", "CW_LINF", "cw_margin", "cw_update",
           "cw_track", "matmul", "column_sums", "CONV_ALGORITHMS", "use_conv", "using_conv",
           "conv_algorithm", "DIRECT_MIN_CHANNELS", "direct_correlate",
           "direct_input_gradient", "direct_weight_gradient", "WINOGRAD_TILE",
           "winograd_correlate", "winograd_input_gradient", "winograd_weight_gradient",
           "BLAS_THREADS", "blas_threads", "environment", "environment_summary"]
