"""Shared by the benchmarks: the trained MNIST net (trained once, cached) and its PyTorch twin."""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import npdistill as nd

# numba-cuda warns of low occupancy on every small launch (a batch of a few images):
# on a GPU that flooded the benches' output and hid their figures
warnings.filterwarnings("ignore", message=r".*Grid size \d+ will likely result in GPU under-utilization")

CACHE = Path(os.environ.get("NPDISTILL_BENCH_CACHE", Path.home() / ".cache" / "npdistill" / "bench"))


def parser(doc, *, repeats=None, quick=None):
    """A bench's argument parser: its description (``doc``'s first paragraph), --json (one
    JSON object printed last, ``report``) and, for a bench that repeats, --repeats (default
    ``repeats``) and --quick (``quick``: what it cuts, for --help)."""
    made = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    made.add_argument("--json", action="store_true", help="print one JSON object last")
    if repeats is not None:
        made.add_argument("--repeats", type=int, default=repeats,
                          help=f"timed runs, medians reported (default {repeats})")
    if quick is not None:
        made.add_argument("--quick", action="store_true", help=quick)
    return made


def report(args, payload):
    """The bench's results as one JSON object, printed last where --json was asked for."""
    if args.json:
        print(json.dumps(payload))


def repeats_from_arguments(doc, isa=False):
    """Parse --quick / --json / --repeats (and, with ``isa``, --isa) for a timing bench:
    (repeats, args)."""
    made = parser(doc, repeats=15, quick="3 repeats")
    if isa:
        made.add_argument("--isa", choices=nd.kernels.ISAS, default=None,
                          help="cap npdistill's kernels (NPDISTILL_ISA) and PyTorch's "
                               "(ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) at this set")
    args = made.parse_args()
    return (3 if args.quick else args.repeats), args


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"


def load_mnist():
    return nd.datasets.load_mnist()


def attack_sample(x_test, y_test, n, seed):
    """n test images drawn without replacement and a random target for each (never its class)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x_test), n, replace=False)
    return x_test[pick], y_test[pick], nd.attacks.random_targets(y_test[pick], 10, rng)


def trained_mnist(epochs=3, seed=0, path=None):
    """The paper's MNIST net trained at T = 1: loaded from ``path`` or the cache, else trained."""
    return nd.load_model(path if path is not None else trained_mnist_path(epochs, seed))


def trained_mnist_path(epochs=3, seed=0):
    """The file of the cached MNIST net trained at T = 1, trained and saved if missing."""
    cached = CACHE / f"papernot_mnist_T1_seed{seed}_e{epochs}.npz"
    if cached.exists():
        return cached
    (x_train, y_train), _ = load_mnist()
    print(f"training the MNIST net for {epochs} epochs (cached in {cached}) ...", file=sys.stderr)
    model, _ = nd.train(nd.architectures.papernot_mnist(seed=seed), (x_train, y_train),
                        epochs=epochs, seed=seed)
    cached.parent.mkdir(parents=True, exist_ok=True)
    model.save(cached)
    return cached


def import_torch(threads=2):
    """torch with ``threads`` CPU threads (2: this project's reference machine), or None
    (peers are optional)."""
    try:
        import torch
    except ImportError:
        print("PyTorch not installed: peers skipped (pip install '.[bench]')", file=sys.stderr)
        return None
    torch.set_num_threads(threads)
    return torch


# PyTorch's own caps of the same instruction sets (npdistill: NPDISTILL_ISA): ATen's
# vectorized kernels and oneDNN's convolutions, both read when torch loads
TORCH_ISA = {"avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
             "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
             "baseline": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}}


class TorchWorker:
    """bench/torch_worker.py in a child process: PyTorch timed apart from npdistill's OpenMP."""

    def __init__(self, device="cpu", isa=None):
        env = dict(os.environ)
        if nd.kernels.WAIT_POLICY_SET_HERE:      # npdistill's setting, not the user's
            env.pop("OMP_WAIT_POLICY")
        if isa is not None:                      # PyTorch capped as npdistill is
            env.update(TORCH_ISA[isa])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.torch_worker", "--device", device],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.version = json.loads(self.process.stdout.readline())["ready"]

    def run(self, workload, calls):
        self.process.stdin.write(f"{workload} {calls}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def runner(self, workload):
        return lambda calls: self.run(workload, calls)

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


def to_torch(model, torch, softmax=False):
    """A torch.nn.Sequential carrying the same weights in float32 (eval mode), logits or
    softmax outputs: npdistill.interop.to_torch, with a Softmax appended when asked."""
    net = nd.interop.to_torch(model.astype(np.float32))
    return torch.nn.Sequential(*net, torch.nn.Softmax(dim=1)).eval() if softmax else net


def check_same_logits(model, torch_model, torch, x, tol=1e-4):
    ours = model.logits(x)
    with torch.no_grad():
        theirs = torch_model(torch.from_numpy(x)).numpy()
    err = float(np.abs(ours - theirs).max())
    if err > tol:
        raise SystemExit(f"the PyTorch twin disagrees: max |logit difference| {err:.2e} > {tol}")
    return err


def timed(fn, repeats):
    """(median seconds, last result) over ``repeats`` calls."""
    times, result = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def median_ms(fn, repeats, warmup=1):
    """``fn`` called ``warmup`` times, then the median of ``repeats`` timed calls, in ms."""
    for _ in range(warmup):
        fn()
    return timed(fn, repeats)[0] * 1e3


def in_process(fn):
    """A block runner for ``timed_interleaved``: ``calls`` timed calls of fn in this process."""
    def run(calls):
        seconds = []
        for _ in range(calls):
            began = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - began)
        return seconds
    return run


def timed_interleaved(runners, repeats, block=5):
    """Median seconds per call of each contender, taken in turns.

    ``runners``: name -> function(calls) -> list of seconds (``in_process`` or
    ``TorchWorker.runner``). Each contender runs ``block`` calls in a row, then
    the next one, round after round, until each has ``repeats``: a passing
    load on a shared machine then hits them all alike.
    """
    for run in runners.values():
        run(1)                                                 # warm-up
    times = {name: [] for name in runners}
    while min(len(v) for v in times.values()) < repeats:
        for name, run in runners.items():
            times[name] += run(block)
    return {name: statistics.median(values) for name, values in times.items()}
