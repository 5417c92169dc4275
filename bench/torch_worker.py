"""The PyTorch side of bench/train_speed.py, in its own process.

Two OpenMP runtimes in one process interfere (npdistill's kernels and
PyTorch's each spin or sleep as their own settings say, and symbols of one
runtime can bind to the other), so the peer runs here, started once by the
bench, and times the workloads it is asked for: one line "<workload> <calls>"
on stdin, one JSON list of seconds on stdout.

``--device cuda``: the same workloads on the GPU (inputs and model resident
there, every call synchronised before its clock stops).
"""
import json
import sys
import time

import torch  # first: PyTorch's OpenMP runtime starts with its own defaults

from bench import common  # noqa: E402

import npdistill as nd  # noqa: E402


def main():
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
    torch.set_num_threads(2)
    (x, y), _ = common.load_mnist()
    model = common.to_torch(nd.architectures.papernot_mnist(seed=0), torch).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    xb, yb = torch.from_numpy(x[:128]).to(device), torch.from_numpy(y[:128]).to(device)
    inputs = {batch: torch.from_numpy(x[:batch]).to(device) for batch in (128, 1024)}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        model.train()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()

    def inference(batch):
        def run():
            model.eval()
            with torch.no_grad():
                model(inputs[batch])
        return run

    workloads = {"train_step_b128": step, "inference_b128": inference(128),
                 "inference_b1024": inference(1024)}
    print(json.dumps({"ready": torch.__version__}), flush=True)
    for line in sys.stdin:
        name, calls = line.split()
        seconds = []
        for _ in range(int(calls)):
            began = time.perf_counter()
            workloads[name]()
            sync()
            seconds.append(time.perf_counter() - began)
        print(json.dumps(seconds), flush=True)


if __name__ == "__main__":
    main()
