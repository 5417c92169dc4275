"""Whole-net speed of the paper's MNIST net: one training step (forward +
backward + SGD update) at batch 128, and inference at batch 128 and 1024, for
npdistill's numpy and cython backends (the cython one twice: its convolutions as
``kernels.conv_algorithm`` picks them, and all as im2col) and for PyTorch CPU (2 threads, the same
architecture and weights) when it is installed; where a GPU is present, also
npdistill's cuda backend (DeviceModel: data, weights and activations on the
device) against PyTorch CUDA on the same device.

    python -m bench.train_speed [--quick] [--json] [--repeats N] [--isa avx2]

``--isa SET`` caps both sides at one instruction set (npdistill: NPDISTILL_ISA; PyTorch:
ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA), so that an AVX-512 machine measures the AVX2
paths like for like.

Images/s are medians over the repeats, after a warm-up; the contenders take
turns in blocks of 5 calls (bench/common.py: timed_interleaved). PyTorch runs
in a child process (bench/torch_worker.py): two OpenMP runtimes in one
process interfere, and each library should run as its users run it.
"""
import sys

import numpy as np

from bench import common

import npdistill as nd


def npdistill_workloads(x, y, backend, conv="auto"):
    """Callables for a training step (batch 128) and inference (128, 1024) on ``backend``,
    its convolutions run as ``conv`` (``kernels.use_conv``)."""
    model = nd.architectures.papernot_mnist(seed=0)
    optimizer = nd.nn.SGD(0.1, 0.5)
    model.set_rng(np.random.default_rng(0))
    xb, yb = x[:128], y[:128]

    def on_backend(fn):
        def run():
            nd.kernels.use(backend)
            nd.kernels.use_conv(conv)
            return fn()
        return run

    def step():
        logits = model.forward(xb, training=True)
        _, dlogits = nd.cross_entropy(logits, yb)
        model.backward(dlogits, input_grad=False)
        optimizer.step(model.params, model.grads, 0)

    return {"train_step_b128": on_backend(step),
            "inference_b128": on_backend(lambda: model.forward(x[:128])),
            "inference_b1024": on_backend(lambda: model.forward(x[:1024]))}


def cuda_workloads(x, y):
    """The same workloads with every array on the GPU (each call synchronised)."""
    from numba import cuda

    from npdistill.cuda import elementwise, head
    from npdistill.cuda.device_model import DeviceModel
    model = nd.architectures.papernot_mnist(seed=0)
    model.set_rng(np.random.default_rng(0))
    net = DeviceModel(model)
    velocity = cuda.to_device(np.zeros(net.size, np.float32))
    groups = cuda.to_device(net.groups())
    lrs = [0.1] * len(net.keys)
    xb, yb = net.to_device_images(x[:128]), cuda.to_device(y[:128])
    inputs = {batch: net.to_device_images(x[:batch]) for batch in (128, 1024)}
    loss = cuda.device_array(128, np.float32)
    dz = cuda.device_array((128, 10), np.float32)
    totals = cuda.to_device(np.zeros(2))
    t = np.float32
    loss_row = (head.CE_HARD, (yb, loss, dz, totals), (t(1), t(128), t(1)))

    def step():             # what DeviceTrainer.epoch runs per batch (the gather aside)
        net.forward(xb, training=True, row=loss_row)
        net.backward(dz, input_grad=False)
        elementwise.sgd_update(net.flat_params, velocity, net.flat_grads, lrs, 0.5, group=groups)
        cuda.synchronize()

    def inference(batch):
        def run():
            net.forward(inputs[batch])
            cuda.synchronize()
        return run

    return {"train_step_b128": step, "inference_b128": inference(128),
            "inference_b1024": inference(1024)}


WORKLOADS = ("train_step_b128", "inference_b128", "inference_b1024")


def _simulated():
    from npdistill.cuda import _launch
    return _launch.SIMULATED


def main():
    repeats, args = common.repeats_from_arguments(__doc__, isa=True)
    if args.isa:
        nd.kernels.use_isa(args.isa)
    (x, y), _ = common.load_mnist()
    x, y = x[:1024], y[:1024]
    print(f"machine: {common.machine()}; median of {repeats} interleaved repeats after a warm-up; "
          f"npdistill's direct kernels: {nd.kernels.isa()}"
          + (f" (capped at {args.isa}, PyTorch too)" if args.isa else ""))
    contenders = {f"npdistill_{b}": npdistill_workloads(x, y, b)
                  for b in nd.kernels.available()[::-1] if b != "cuda"}
    if "npdistill_cython" in contenders:               # the convolutions before Winograd
        contenders["npdistill_cython_im2col"] = npdistill_workloads(x, y, "cython", "im2col")
    workers = {}
    try:
        workers["torch"] = common.TorchWorker(isa=args.isa)
    except Exception as exc:       # PyTorch missing or broken: still measure npdistill
        print(f"PyTorch peer unavailable ({exc}); npdistill only", file=sys.stderr)
    if "cuda" in nd.kernels.available() and not _simulated():
        contenders["npdistill_cuda"] = cuda_workloads(x, y)
        try:
            workers["torch_cuda"] = common.TorchWorker("cuda")
        except Exception as exc:
            print(f"PyTorch CUDA peer unavailable ({exc})", file=sys.stderr)
    results = {name: {} for name in (*contenders, *workers)}
    for workload in WORKLOADS:
        batch = 1024 if workload.endswith("1024") else 128
        runners = {name: common.in_process(jobs[workload]) for name, jobs in contenders.items()}
        runners.update({name: worker.runner(workload) for name, worker in workers.items()})
        for name, seconds in common.timed_interleaved(runners, repeats).items():
            results[name][workload] = batch / seconds
    for name, worker in workers.items():
        print(f"{name}: PyTorch {worker.version} in a separate process"
              + (", 2 threads" if name == "torch" else ""))
        worker.close()
    for name, rates in results.items():
        print(f"{name:<18} " + "   ".join(f"{k} {v:8,.0f} img/s" for k, v in rates.items()))
    best = results.get("npdistill_cython") or results["npdistill_numpy"]
    peer = results.get("torch", {})
    summary = {"machine": common.machine(), "repeats": repeats, "isa": nd.kernels.isa(),
               "isa_cap": args.isa,
               "npdistill_img_s": best["train_step_b128"],
               "torch_img_s": peer.get("train_step_b128"),
               "ratio_vs_torch": (best["train_step_b128"] / peer["train_step_b128"]) if peer else None,
               "inference_ratio_vs_torch_best": (
                   max(best["inference_b128"], best["inference_b1024"])
                   / max(peer["inference_b128"], peer["inference_b1024"])) if peer else None,
               "results": results}
    if peer:
        print(f"training step: npdistill / PyTorch = {summary['ratio_vs_torch']:.2f}x; inference "
              f"(best batch each): {summary['inference_ratio_vs_torch_best']:.2f}x")
    if "npdistill_cuda" in results and "torch_cuda" in results:
        summary["cuda_ratio_vs_torch_cuda"] = (results["npdistill_cuda"]["train_step_b128"]
                                               / results["torch_cuda"]["train_step_b128"])
        print(f"training step on the GPU: npdistill cuda / PyTorch CUDA = "
              f"{summary['cuda_ratio_vs_torch_cuda']:.2f}x")
    common.report(args, summary)


if __name__ == "__main__":
    main()
