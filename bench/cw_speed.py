"""Carlini-Wagner L2: npdistill against the authors' algorithm (in plain PyTorch on a
twin carrying the same weights), torchattacks' CW and IBM ART's CarliniL2Method.

The MNIST net of Papernot et al. (2016), trained once and cached; test images the
net classifies correctly, each with a random target (never its class).

    python -m bench.cw_speed [--quick] [--json] [--images 100] [--steps 1000]
                             [--binary-steps 9] [--c 1e-3] [--repeats 3]
                             [--contenders npdistill,reference,torchattacks]
                             [--reference-batch 20] [--torchattacks-c 10]
                             [--art-images 10] [--model m.npz] [--save results.npz]
                             [--check-every N] [--cold]

The budget is the authors' search: ``--binary-steps`` rounds over c from ``--c``
(x10 until a success, then bisection), ``--steps`` Adam steps per round, lr 1e-2,
kappa 0, stopping early when the loss stalls. Contenders:

- npdistill: ``npdistill.attacks.cw_l2`` with that budget (its defaults otherwise;
  ``--check-every N`` and ``--cold``, warm_start=False, measure its choices);
- reference: the authors' algorithm (bench/cw_reference.py) in batches of
  ``--reference-batch`` images, restarting every round from the clean image and
  stopping a whole batch when its summed loss stalls;
- torchattacks: ``torchattacks.CW`` has no search over c: one run at
  ``--torchattacks-c`` with ``--steps`` steps (a different budget, shown for scale);
- art: ``CarliniL2Method`` with the same rounds, steps and first c on the first
  ``--art-images`` images (it is slow: its own optimiser with a line search).

Every contender runs in a process of its own (PyTorch's OpenMP runtime in the
process slows npdistill's kernels several-fold), in turns, ``--repeats`` times
(medians of the seconds; the answers are the last run's: each is deterministic at
a fixed thread count). Reported per contender: seconds per image, success, mean
and median L2 of the successes, Adam steps per image (npdistill counts each
image's; the reference's batch runs as long as its slowest member), and the time
to equal success: the seconds after which the contender had as many successes as
the reference ends with (the contenders report their count after every round).
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import common

import npdistill as nd

CONTENDERS = ("npdistill", "reference", "torchattacks", "art")


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="10 images, 3 rounds of 300 steps from c = 1, one run")
    parser.add_argument("--model", default=None, help="a trained model file (default: cached)")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1000, help="Adam steps per round")
    parser.add_argument("--binary-steps", type=int, default=9, help="rounds of the search on c")
    parser.add_argument("--c", type=float, default=1e-3, help="the first c")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (medians)")
    parser.add_argument("--contenders", default="npdistill,reference,torchattacks",
                        help=f"comma-separated, from {', '.join(CONTENDERS)}")
    parser.add_argument("--reference-batch", type=int, default=20)
    parser.add_argument("--torchattacks-c", type=float, default=10.0)
    parser.add_argument("--art-images", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-every", type=int, default=0,
                        help="npdistill's check_every (0: its default)")
    parser.add_argument("--cold", action="store_true",
                        help="npdistill with warm_start=False (every round from x)")
    parser.add_argument("--save", default=None,
                        help="write every contender's examples and per-image figures here (.npz)")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return work(args.worker, Path(args.task), Path(args.out))
    if args.quick:
        args.images, args.steps, args.binary_steps, args.c, args.repeats = 10, 300, 3, 1.0, 1
    if args.check_every < 0:
        parser.error(f"--check-every must be at least 0, got {args.check_every}")
    for name in ("images", "steps", "binary_steps", "repeats", "reference_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    contenders = [name.strip() for name in args.contenders.split(",") if name.strip()]
    unknown = sorted(set(contenders) - set(CONTENDERS))
    if unknown or not contenders:
        parser.error(f"--contenders takes names from {', '.join(CONTENDERS)}, got {args.contenders!r}")

    model_path = Path(args.model) if args.model else common.trained_mnist_path()
    model = nd.load_model(model_path)
    _, (x_test, y_test) = common.load_mnist()
    x, y, targets = correct_sample(model, x_test, y_test, args.images, args.seed)
    print(f"machine: {common.machine()}")
    print(f"model: test accuracy {nd.metrics.accuracy(model, x_test, y_test):.2%}; "
          f"{len(x)} correctly classified test images, random targets; {args.binary_steps} "
          f"rounds x {args.steps} Adam steps, c from {args.c:g}, lr 1e-2, kappa 0", flush=True)
    rows, runs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        task = Path(tmp) / "task.npz"
        np.savez(task, model=str(model_path), x=x, targets=targets, steps=args.steps,
                 binary_steps=args.binary_steps, c=args.c, reference_batch=args.reference_batch,
                 torchattacks_c=args.torchattacks_c, art_images=args.art_images,
                 check_every=args.check_every, warm_start=not args.cold)
        seconds = {name: [] for name in contenders}
        for _ in range(args.repeats):                       # in turns: a passing load hits all
            for name in contenders:
                out = Path(tmp) / f"{name}.npz"
                subprocess.run([sys.executable, "-m", "bench.cw_speed", "--worker", name, "--task", str(task),
                                "--out", str(out)], check=True)
                with np.load(out, allow_pickle=False) as got:
                    runs[name] = {key: got[key] for key in got.files}
                if runs[name]["skipped"]:
                    print(f"{name}: {runs[name]['skipped']}", flush=True)
                    break
                seconds[name].append(float(runs[name]["seconds"]))
    reference_successes = None
    if "reference" in runs and not runs["reference"]["skipped"]:
        reference_successes = int(summary_of(runs["reference"], x, targets, model)["successes"])
    for name in contenders:
        if name in runs and not runs[name]["skipped"]:
            rows[name] = summary_of(runs[name], x, targets, model, statistics.median(seconds[name]),
                                    reference_successes)
            print_row(name, rows[name], len(seconds[name]))
    if "reference" in rows and "npdistill" in rows:
        ours, theirs = rows["npdistill"], rows["reference"]
        ratio = theirs["seconds_per_image"] / ours["seconds_per_image"]
        l2 = f", mean L2 {ours['mean_l2'] / theirs['mean_l2']:.3f}x the reference's" \
            if ours["mean_l2"] and theirs["mean_l2"] else ""
        print(f"npdistill / reference: {ratio:.2f}x faster, success {ours['success']:.1%} vs "
              f"{theirs['success']:.1%}{l2}")
        lost = np.flatnonzero(runs["reference"]["success"] & ~runs["npdistill"]["success"])
        if lost.size:
            print(f"images the reference breaks and npdistill does not: {lost.tolist()}")
    if args.save:
        np.savez(args.save, x=x, y=y, targets=targets,
                 **{f"{name}_{key}": value for name, run in runs.items() for key, value in run.items()
                    if key != "skipped"})
    common.report(args, {"machine": common.machine(), "images": len(x), "steps": args.steps,
                          "binary_steps": args.binary_steps, "c": args.c, "results": rows})


def correct_sample(model, x_test, y_test, n, seed):
    """n test images the model classifies correctly, with random targets (seeded)."""
    right = model.predict(x_test) == y_test
    x, y, targets = common.attack_sample(x_test[right], y_test[right], n, seed)
    return x, y, targets


def summary_of(run, x, targets, model, seconds=None, reference_successes=None):
    """One contender's figures from its run (x_adv, steps, timeline)."""
    x_adv, every_image = run["x_adv"], len(run["x_adv"]) == len(x)
    x, targets = x[:len(x_adv)], targets[:len(x_adv)]        # ART: the first --art-images
    success = model.predict(x_adv) == targets
    run["success"] = success
    l2 = np.sqrt(((x_adv.astype(np.float64) - x) ** 2).reshape(len(x), -1).sum(axis=1))
    seconds = float(run["seconds"]) if seconds is None else seconds
    row = {"seconds_per_image": seconds / len(x), "images": len(x),
           "successes": int(success.sum()), "success": float(success.mean()),
           "mean_l2": float(l2[success].mean()) if success.any() else None,
           "median_l2": float(np.median(l2[success])) if success.any() else None,
           "adam_steps_per_image": float(run["steps"].mean()) if run["steps"].size else None}
    if reference_successes is not None and every_image:
        timeline = run["timeline"]                          # (elapsed, successes) rows
        reached = timeline[timeline[:, 1] >= min(reference_successes, len(x))] \
            if timeline.size else timeline
        row["seconds_to_reference_success"] = float(reached[0, 0]) if len(reached) else None
    return row


def print_row(name, row, runs):
    def shown(value, form):
        return "-" if value is None else format(value, form)
    print(f"{name:<13} {row['seconds_per_image']:7.3f} s/image   success {row['success']:6.1%}"
          f"   L2 mean {shown(row['mean_l2'], '.3f')} median {shown(row['median_l2'], '.3f')}"
          f"   {shown(row['adam_steps_per_image'], ',.0f')} Adam steps/image   equal success "
          f"after {shown(row.get('seconds_to_reference_success'), '.1f')} s"
          f"   ({row['images']} images, median of {runs})", flush=True)


def work(name, task_path, out):
    """Run one contender on the task in this process; write its answer to ``out``."""
    with np.load(task_path, allow_pickle=False) as task:
        task = {key: task[key][()] if task[key].ndim == 0 else task[key] for key in task.files}
    x, targets = task["x"], task["targets"]
    model = nd.load_model(str(task["model"]))
    timeline = []
    began = time.perf_counter()

    def record(successes):
        timeline.append((time.perf_counter() - began, successes))

    steps = np.zeros(0, np.int64)
    if name == "npdistill":
        model.predict(x[:2])                                            # warm-up
        began = time.perf_counter()
        result = nd.attacks.cw_l2(
            model, x, target=targets, c=task["c"], binary_search_steps=task["binary_steps"],
            max_iterations=task["steps"], check_every=int(task["check_every"]) or None,
            warm_start=bool(task["warm_start"]),
            progress=lambda event: record(event.figures["successes"]))
        x_adv, steps = result.x_adv, result.iterations
    else:
        torch = common.import_torch()
        if torch is None:
            return np.savez(out, skipped="PyTorch not installed (pip install '.[bench]')")
        twin = common.to_torch(model, torch)
        common.check_same_logits(model, twin, torch, x)
        if name == "reference":
            from bench import cw_reference
            began = time.perf_counter()
            x_adv, steps = cw_reference.carlini_l2(
                torch, twin, x, targets, batch_size=int(task["reference_batch"]),
                initial_const=task["c"], binary_search_steps=task["binary_steps"],
                max_iterations=task["steps"], on_round=record)
        elif name == "torchattacks":
            try:
                import torchattacks
            except ImportError:
                return np.savez(out, skipped="not installed (pip install torchattacks)")
            attack = torchattacks.CW(twin, c=task["torchattacks_c"], kappa=0, steps=task["steps"],
                                     lr=1e-2)
            tensor = torch.from_numpy(targets)
            attack.set_mode_targeted_by_function(lambda images, labels: tensor[:len(images)])
            began = time.perf_counter()
            x_adv = attack(torch.from_numpy(x), tensor).numpy()
        else:
            try:
                from art.attacks.evasion import CarliniL2Method
                from art.estimators.classification import PyTorchClassifier
            except ImportError:
                return np.savez(out, skipped="not installed (pip install "
                                             "adversarial-robustness-toolbox)")
            x, targets = x[:task["art_images"]], targets[:task["art_images"]]
            classifier = PyTorchClassifier(twin, loss=torch.nn.CrossEntropyLoss(),
                                           input_shape=x.shape[1:], nb_classes=10,
                                           clip_values=(0.0, 1.0), device_type="cpu")
            attack = CarliniL2Method(classifier, confidence=0.0, targeted=True, learning_rate=1e-2,
                                     binary_search_steps=task["binary_steps"],
                                     max_iter=task["steps"], initial_const=task["c"],
                                     batch_size=len(x), verbose=False)
            began = time.perf_counter()
            x_adv = attack.generate(x, y=np.eye(10, dtype=np.float32)[targets])
    seconds = time.perf_counter() - began
    record(int((model.predict(x_adv) == targets).sum()))
    np.savez(out, skipped="", x_adv=np.asarray(x_adv, np.float32), steps=np.asarray(steps),
             seconds=seconds, timeline=np.asarray(timeline, np.float64).reshape(-1, 2))


if __name__ == "__main__":
    main()
