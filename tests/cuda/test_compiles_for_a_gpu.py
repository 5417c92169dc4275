"""Every CUDA kernel, with the argument types the library launches it with, compiles for a
real GPU (PTX for an H100, sm_90, through NVVM; no GPU needed).

The simulator interprets the kernels as Python and types nothing: it accepted a shared
array whose shape was an expression (``BLOCK + 1``), which Numba's compiler refuses and only
a real GPU showed. Here short runs of training (hard and soft labels), JSMA, CW L2 and
CW L-infinity on the simulator, in float32 and float64, record every kernel launch and its
argument types; child processes without the simulator (one per core, up to 4) then
compile each signature.
NVVM comes with the gpu-compile extra (nvidia-cuda-nvcc-cu12); under CI its absence fails the test.
"""
import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import npdistill as nd
from npdistill import kernels

pytest.importorskip("numba.cuda", reason="numba-cuda not installed (pip install -e '.[test]')")
from npdistill.cuda import _launch, dense  # noqa: E402
from tests.cuda.test_device_model import small_net, unfused_net  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not _launch.SIMULATED, reason="records launches on the simulator")]


def identity(f):
    """What tells apart the kernels one factory makes: fused._make_gemm's key (views,
    epilogue, dtype, outputs per thread; the sizes it derives from TILE differ on the
    simulator), else the device functions a factory closes over (cuda/head.py's)."""
    key = getattr(f, "npdistill_key", None)
    if key is not None:
        return {"key": list(key)}
    out = {}
    for name, cell in zip(f.__code__.co_freevars, f.__closure__ or ()):
        value = cell.cell_contents
        fn = getattr(value, "py_func", None) or getattr(value, "fn", None)
        if callable(fn):
            out[name] = fn.__name__
    return out


COMPILE = inspect.getsource(identity) + r"""
import importlib, json, sys
import numpy as np
from numba import cuda, from_dtype, types
try:
    from numba.cuda.cudadrv import nvvm
    nvvm.NVVM()
except Exception as exc:
    print(json.dumps({"skip": f"NVVM is not available ({exc}): pip install -e '.[test,gpu-compile]'"}))
    sys.exit()

# a kernel's device functions are compiled for the current device's compute capability:
# with no GPU here, say it is an H100's (numba-cuda's dispatcher asks get_current_device)
import types as pytypes
from numba.cuda import dispatcher
dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(9, 0))

def argument_type(d):
    if d[0] == "array":
        return types.Array(from_dtype(np.dtype(d[1])), d[2], d[3])
    if d[0] == "tuple":
        return types.Tuple([argument_type(e) for e in d[1]])
    return types.boolean if d[1] == "bool" else getattr(types, d[1])

from npdistill.cuda import fused               # its kernels are made on first use
for k in json.load(open(sys.argv[1])):
    if "key" in k["identity"]:
        fused.kernel(*k["identity"]["key"])
kernels = {}
for module in {k["module"] for k in json.load(open(sys.argv[1]))}:
    for value in vars(importlib.import_module(module)).values():
        for v in (value.values() if isinstance(value, dict) else [value]):
            if hasattr(v, "py_func") and not v.targetoptions.get("device"):
                key = json.dumps(identity(v.py_func), sort_keys=True)
                kernels[(module, v.py_func.__qualname__, key)] = v
failures, compiled = [], 0
for k in json.load(open(sys.argv[1])):
    kernel = kernels[(k["module"], k["qualname"], json.dumps(k["identity"], sort_keys=True))]
    signature = tuple(argument_type(d) for d in k["args"])
    try:
        cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
        compiled += 1
    except Exception as exc:
        failures.append(f"{k['qualname']}{signature}: {str(exc)[:400]}")
print(json.dumps({"compiled": compiled, "failures": failures}))
"""


def describe(value):
    """A JSON description of a kernel argument's Numba type."""
    array = getattr(value, "_ary", value)                  # the simulator's device arrays
    if isinstance(array, np.ndarray):
        layout = "C" if array.flags.c_contiguous else "F" if array.flags.f_contiguous else "A"
        return ["array", array.dtype.str, array.ndim, layout]
    if isinstance(value, tuple):
        return ["tuple", [describe(v) for v in value]]
    from numba import typeof
    return ["scalar", str(typeof(value))]


def record_launches(monkeypatch):
    """{key: launch} of every kernel launched from now on (device functions aside)."""
    from numba.cuda.simulator import kernel as simulated
    launches = {}
    real_call = simulated.FakeCUDAKernel.__call__

    def recording(self, *args):
        if not self._device:
            launch = {"module": self.fn.__module__, "qualname": self.fn.__qualname__,
                      "identity": identity(self.fn),
                      "args": [describe(a) for a in args]}
            launches[json.dumps(launch)] = launch
        return real_call(self, *args)
    monkeypatch.setattr(simulated.FakeCUDAKernel, "__call__", recording)
    return launches


def defined_kernels():
    """(module, qualname) of every kernel the npdistill.cuda modules define."""
    import importlib
    from numba.cuda.simulator import kernel as simulated
    found = set()
    for name in ("attacks", "conv", "cw", "dense", "elementwise", "fused", "head", "pool",
                 "saliency"):
        module = importlib.import_module(f"npdistill.cuda.{name}")
        for value in vars(module).values():
            for v in (value.values() if isinstance(value, dict) else [value]):
                if isinstance(v, simulated.FakeCUDAKernel) and not v._device:
                    found.add((v.fn.__module__, v.fn.__qualname__))
    return found


def test_every_kernel_the_library_launches_compiles_for_an_h100(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    launches = record_launches(monkeypatch)
    kernels.use("cuda")
    x = rng.random((4, 2, 5, 5))
    y = rng.integers(0, 3, 4)
    soft = rng.dirichlet(np.ones(3), 4)
    for dtype in (np.float32, np.float64):
        xd = x.astype(dtype)
        # hard labels; soft ones (distillation) at float32, the dtype nets train in
        for target, T in ((y, 1.0),) + (((soft.astype(dtype), 5.0),) if dtype == np.float32 else ()):
            nd.train(small_net(dtype), (xd, target), epochs=1, batch_size=3, seed=0,
                     temperature=T, progress=False)
        model = small_net(dtype, seed=4)
        goal = (model.predict(xd) + 1) % 3
        nd.attacks.jsma(model, xd[:2], target=goal[:2], gamma=0.1, progress=False)  # both saliencies:
        nd.attacks.cw_l2(model, xd[:2], target=goal[:2], c=1.0, max_iterations=2,  # same types
                         binary_search_steps=1, progress=False)
        nd.attacks.cw_linf(model, xd[:1], target=goal[:1], c=1.0, largest_const=2.0,
                           max_iterations=2, progress=False)
        a, b = rng.random((3, 40)).astype(dtype), rng.random((40, 2)).astype(dtype)
        dense.gemm(a, b, np.empty((3, 2), dtype), splits=2)   # a weight gradient's split
        # a net whose layers run alone (no head, a ReLU and dropout after the pooling)
        nd.train(unfused_net(dtype), (xd, y), epochs=1, batch_size=3, seed=0, progress=False)
        nd.attacks.jsma(unfused_net(dtype, seed=4), xd[:2], target=goal[:2], gamma=0.1,
                        progress=False)
        # the kernels the dispatch of npdistill.kernels reaches
        kernels.col2im(np.ones((2 * 3 * 3, 4 * 2), dtype), (2, 2, 3, 3), 2, 2, (1, 0, 1, 0))
        kernels.saliency_pairs(*rng.random((2, 2, 6)).astype(dtype), np.ones((2, 6), bool))
        n = 2
        kernels.cw_track(*(np.zeros((n, 4), dtype),) * 2, np.ones(n, dtype),
                         np.ones(n, np.uint8), np.full(n, 2, dtype), np.full(n, 2, dtype),
                         np.zeros((n, 4), dtype), np.zeros((n, 4), dtype))
    missing = defined_kernels() - {(k["module"], k["qualname"]) for k in launches.values()}
    assert not missing, f"kernels this test never launched (add them to its runs): {missing}"

    # the signatures dealt to one child process per core (compiling is most of the time)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    signatures, parts, children = list(launches.values()), min(os.cpu_count() or 1, 4), []
    for part in range(parts):
        path = tmp_path / f"launches{part}.json"
        path.write_text(json.dumps(signatures[part::parts]))
        children.append(subprocess.Popen([sys.executable, "-c", COMPILE, str(path)], env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True))
    outputs = [child.communicate(timeout=900) for child in children]   # all end first
    for child, (stdout, stderr) in zip(children, outputs):
        assert child.returncode == 0, stderr[-3000:]
    results = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    skipped = [r["skip"] for r in results if "skip" in r]
    if skipped:
        if os.environ.get("CI"):
            pytest.fail(skipped[0])
        pytest.skip(skipped[0])
    assert [f for r in results for f in r["failures"]] == []
    assert sum(r["compiled"] for r in results) == len(launches)
