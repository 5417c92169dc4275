"""What the cuda backend asks of the GPU, counted without one: the kernel launches of a
training step, an inference pass, an input backward, a JSMA iteration and a CW L2 step
on the paper's MNIST net (Numba's simulator, 2 images: the counts do not depend on the
batch), and the instruction mix of the compiled GEMM (sm_90 PTX through NVVM, when
installed: the test extra brings it).

    python -m bench.cuda_launches [--json]

With the milliseconds a step takes on a GPU (bench/train_speed.py, bench/cw_speed.py),
the counts give the time per launch (bench/RESULTS.md, GPU).
"""
import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]     # the repository: where `-m bench.<name>` runs
TARGETS = {"train_step": 25, "inference_forward": 10, "jsma_iteration": 15, "cw_l2_step": 12}


def count_launches():
    """{workload: launches} on the simulator (this process must have NUMBA_ENABLE_CUDASIM=1);
    the kernels are counted, not run, so the arrays hold no meaningful values."""
    import numpy as np
    from numba import cuda
    from numba.cuda.simulator import kernel as simulated

    import npdistill as nd
    from npdistill.cuda import elementwise, head
    from npdistill.cuda.device_model import DeviceModel

    launches = [0]
    real_call = simulated.FakeCUDAKernel.__call__

    def counting(self, *args):      # counted, not run: which kernels a pass launches does
        if self._device:            # not depend on the values (JSMA's running flags stay
            return real_call(self, *args)       # set, CW runs without abort_early)
        launches[0] += 1
    simulated.FakeCUDAKernel.__call__ = counting

    def launched(fn):
        launches[0] = 0
        fn()
        return launches[0]

    nd.kernels.use("cuda")
    rng = np.random.default_rng(0)
    model = nd.architectures.papernot_mnist(seed=0)
    net = DeviceModel(model)
    x = rng.random((2, 1, 28, 28)).astype(np.float32)
    xb, yb = net.to_device_images(x), cuda.to_device(np.array([1, 2]))
    loss, dz = cuda.device_array(2, np.float32), cuda.device_array((2, 10), np.float32)
    totals = cuda.to_device(np.zeros(2))
    velocity = cuda.to_device(np.zeros(net.size, np.float32))
    groups = cuda.to_device(net.groups())
    lrs = [0.1] * len(net.keys)
    t = np.float32
    counts = {}
    loss_row = (head.CE_HARD, (yb, loss, dz, totals), (t(1), t(2), t(1)))
    counts["train_forward_and_loss"] = launched(lambda: net.forward(xb, training=True,
                                                                    row=loss_row))
    counts["train_backward"] = launched(lambda: net.backward(dz, input_grad=False))
    counts["train_sgd"] = launched(lambda: elementwise.sgd_update(
        net.flat_params, velocity, net.flat_grads, lrs, 0.5, group=groups))
    counts["train_step"] = sum(counts[k] for k in ("train_forward_and_loss", "train_backward",
                                                   "train_sgd"))
    counts["inference_forward"] = launched(lambda: net.forward(xb))
    counts["input_backward"] = launched(lambda: net.backward(dz, param_grads=False))
    target = (model.predict(x) + 1) % 10

    def per_iteration(run):                   # launches of 2 iterations minus those of 1
        return launched(lambda: run(2)) - launched(lambda: run(1))
    counts["jsma_iteration"] = per_iteration(lambda it: nd.attacks.jsma(
        model, x, target=target, gamma=(2 * it + 0.5) / 784, progress=False))
    counts["cw_l2_step"] = per_iteration(lambda it: nd.attacks.cw_l2(
        model, x, target=target, max_iterations=it, binary_search_steps=1, abort_early=False,
        progress=False))
    simulated.FakeCUDAKernel.__call__ = real_call
    return counts


def gemm_ptx():
    """{variant: {"instructions", "fma", "ld.shared", "local"}} of the plain GEMM (two
    matrices, stored) for sm_90, or a string saying why not (NVVM missing)."""
    import numpy as np
    from numba import cuda, types

    from npdistill.cuda import fused
    out = {}
    for dtype in (np.float32, np.float64):
        for work in (1, 4):
            kernel = fused.kernel(fused.MAT, fused.MAT, fused.STORE, dtype, work)
            element = types.float32 if dtype == np.float32 else types.float64
            a1, a2, a3 = (types.Array(element, d, "C") for d in (1, 2, 3))
            geometry = types.UniTuple(types.int64, 6)
            signature = (a2, geometry, a2, geometry, types.int64, types.int64, types.int64,
                         types.int64, a3, types.Array(types.int32, 1, "C"), a2, a1, a1, a1,
                         types.UniTuple(types.int64, 3), types.UniTuple(types.float64, 2),
                         element, element)
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
            except Exception as exc:                      # no NVVM here
                return f"not compiled: {str(exc).splitlines()[0][:200]}"
            ops = collections.Counter(re.findall(r"^\s+([a-z][\w.]*)", ptx, re.M))
            out[f"{np.dtype(dtype)}_work{work}"] = {
                "instructions": sum(ops.values()),
                "fma": sum(v for op, v in ops.items() if op.startswith("fma")),
                "ld.shared": sum(v for op, v in ops.items() if op.startswith("ld.shared")),
                "local": sum(v for op, v in ops.items() if ".local" in op)}
    return out


def main():
    if "--count" in sys.argv:                       # the child, on the simulator
        print(json.dumps(count_launches()))
        return
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    child = subprocess.run([sys.executable, "-m", "bench.cuda_launches", "--count"], env=env,
                           capture_output=True, text=True, check=True, cwd=ROOT)
    counts = json.loads(child.stdout.strip().splitlines()[-1])
    ptx = gemm_ptx()
    print("kernel launches (the paper's MNIST net, counted on Numba's simulator; target):")
    for name, n in counts.items():
        target = f"  (<= {TARGETS[name]})" if name in TARGETS else ""
        print(f"  {name:<26} {n:4d}{target}")
    print("GEMM for sm_90 (static PTX counts; the inner loop's body holds the fma and ld.shared):")
    if isinstance(ptx, str):
        print(f"  {ptx}")
    else:
        for name, row in ptx.items():
            print(f"  {name:<16} " + "  ".join(f"{k} {v}" for k, v in row.items()))
    if "--json" in sys.argv:
        print(json.dumps({"launches": counts, "gemm_ptx": ptx}))


if __name__ == "__main__":
    main()
