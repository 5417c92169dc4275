"""Numba CUDA kernels: the hot loops on an NVIDIA GPU.

The modules ``conv``, ``pool``, ``saliency`` and ``cw`` have the signatures of
their NumPy references in ``npdistill.kernels`` (the specification, tested
equal); ``dense`` (the GEMM) and ``elementwise`` (ReLU, dropout, tempered softmax
cross-entropy, SGD) those of ``npdistill.kernels.reference.cuda_dense`` and of the CPU path's
layers, loss and SGD step (see ``elementwise``). ``fused`` is the one GEMM kernel
of the network's products, with its operands read through views (implicit im2col,
the transposed convolution) and its epilogues (bias, ReLU, dropout, masks, the
pooling's scatter); ``head`` runs a net's last Dense layers in one launch each way,
with the loss or an attack's seeds computed there.
``device_model.DeviceModel`` chains them into a Sequential whose activations,
gradients and parameters stay on the device, in as few launches as its layers
allow (bench/cuda_launches.py counts them); ``passes.DevicePasses`` gives it the
``Passes`` interface (npdistill.nn.passes), ``trainer.DeviceTrainer`` runs train()'s
epochs with it (optimizer state on the device too), ``attacks`` the JSMA and CW L2
loops. ``npdistill.placement`` is the only module above ``kernels`` that imports them.

Every function takes NumPy arrays (copied to the device and the outputs back:
what the dispatch of ``npdistill.kernels`` hands them) or device arrays (no
copy: what DeviceModel uses). Importing ``npdistill`` never imports this
package; ``npdistill.kernels.use("cuda")`` does, and says what is missing.
``NUMBA_ENABLE_CUDASIM=1`` runs the kernels on Numba's simulator (a CPU, slowly:
the tests use it on small shapes).
"""


def missing():
    """None when the CUDA kernels can run here, else why not (a sentence)."""
    try:
        from numba import cuda
    except ImportError as exc:
        return (f"numba-cuda is not installed ({exc}): `pip install numba-cuda[cu12]`, "
                "or set NUMBA_ENABLE_CUDASIM=1 with numba-cuda installed to simulate")
    if not cuda.is_available():
        return ("no CUDA GPU or driver found (numba.cuda.is_available() is False); "
                "NUMBA_ENABLE_CUDASIM=1 runs the kernels on the simulator")
    return None


def load():
    """The kernel modules {"conv", "pool", "saliency", "cw", "dense", "elementwise"};
    raises RuntimeError naming what is missing."""
    reason = missing()
    if reason is not None:
        raise RuntimeError(f"the cuda backend cannot run: {reason}")
    from . import conv, cw, dense, elementwise, pool, saliency
    return {"conv": conv, "pool": pool, "saliency": saliency, "cw": cw, "dense": dense,
            "elementwise": elementwise}
