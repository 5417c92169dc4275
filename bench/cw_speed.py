"""Carlini-Wagner L2 speed: npdistill against torchattacks' CW and IBM ART's
CarliniL2Method on a PyTorch twin carrying the same weights, at the same budget.

The MNIST net of Papernot et al. (2016), trained once and cached; test images
with random targets (never the true class).

    python bench/cw_speed.py [--quick] [--json] [--images 100] [--steps 1000] [--c 10]
                             [--repeats 3] [--art-images 10] [--art-binary-steps 1]
                             [--model m.npz]

Budgets, matched per peer:
- torchattacks.CW has no search over c: npdistill runs one binary-search step
  at the same c, with the same Adam steps and learning rate (1e-2); both stop
  early when the loss stalls (torchattacks for the batch, npdistill per image).
- ART's CarliniL2Method searches c over ``--art-binary-steps`` rounds of
  ``--steps`` iterations, each a gradient step with a line search on the step
  size (its own optimiser, not Adam); npdistill runs the same rounds and steps
  from the same first c on the same ``--art-images`` images (ART is slow: the
  first 10 by default). ART never stops early.
Tanh-space CW needs hundreds of Adam steps before dark MNIST pixels move
(d x / d w is about 1e-6 at a black pixel), hence the default of 1,000.
Reported per contender: seconds per image, success rate (the twin's logits are
checked equal to npdistill's), mean L2 of the successes, and where counted the
Adam steps summed over the images with the time per image-step: torchattacks
stops its whole batch when the summed loss rises between checks, npdistill stops
each image when its own loss stalls, so the steps run differ; the time per
image-step compares equal work. npdistill and torchattacks run in turns,
``--repeats`` times each (medians; one run with --quick): on a shared machine
their speed drifts by 15% from one minute to the next. ART runs once.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import npdistill as nd  # noqa: E402


def summarize(name, seconds, x, x_adv, model, targets, image_steps=None):
    """One contender's row; ``image_steps``: optimiser steps summed over the images (the
    work done: early stopping, per image or per batch, makes it differ between peers)."""
    success = model.predict(x_adv) == targets
    l2 = np.sqrt(((x_adv.astype(np.float64) - x) ** 2).reshape(len(x), -1).sum(axis=1))
    row = {"seconds_per_image": seconds / len(x), "success": float(success.mean()),
           "mean_l2": float(l2[success].mean()) if success.any() else None, "images": len(x)}
    steps_text = ""
    if image_steps:
        row["image_steps"] = int(image_steps)
        row["ms_per_image_step"] = seconds / image_steps * 1e3
        steps_text = f", {image_steps / len(x):.0f} steps/image, " \
                     f"{row['ms_per_image_step']:.3f} ms/image-step"
    l2_text = f"{row['mean_l2']:.3f}" if row["mean_l2"] is not None else "-"
    print(f"{name:<44} {row['seconds_per_image'] * 1e3:9.1f} ms/image   success "
          f"{row['success']:6.1%}   mean L2 {l2_text:>6}   ({len(x)} images, {seconds:.1f} s"
          f"{steps_text})", flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 images, 300 steps")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--model", default=None, help="a trained model file (default: cached)")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps per c")
    parser.add_argument("--c", type=float, default=10.0, help="c (the first c for ART's search)")
    parser.add_argument("--art-images", type=int, default=10, help="0: no ART")
    parser.add_argument("--art-binary-steps", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-device", choices=("cpu", "cuda"), default="cpu",
                        help="where torchattacks runs its twin (ART stays on the CPU)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs of npdistill and torchattacks, in turns (medians)")
    args = parser.parse_args()
    n, steps = (20, 300) if args.quick else (args.images, args.steps)
    repeats = 1 if args.quick else args.repeats
    for name in ("images", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.art_images < 0:
        parser.error(f"--art-images must be at least 0, got {args.art_images}")

    model = common.trained_mnist(path=args.model)
    _, (x_test, y_test) = common.load_mnist()
    x, y, targets = common.attack_sample(x_test, y_test, n, args.seed)
    print(f"machine: {common.machine()}")
    print(f"model: test accuracy {nd.metrics.accuracy(model, x_test, y_test):.2%}; {n} images, "
          f"random targets, {steps} steps, c = {args.c}, lr = 1e-2, kappa = 0")
    results = {}
    torch = common.import_torch()
    twin = None
    if torch is not None:
        twin = common.to_torch(model, torch)
        print(f"PyTorch twin: max |logit difference| "
              f"{common.check_same_logits(model, twin, torch, x):.1e}")

    def ours(binary_steps, m=n):
        return nd.attacks.cw_l2(model, x[:m], target=targets[:m], c=args.c, max_iterations=steps,
                                binary_search_steps=binary_steps, progress=False)

    best = nd.kernels.backend()
    ours(1, 2)                                                         # warm-up
    contenders = {"npdistill": lambda: ours(1)}
    torchattacks_rows = None
    if twin is not None:
        # a twin of its own: Module.to moves in place, and ART's twin stays on the CPU
        attack = torchattacks_runner(torch, common.to_torch(model, torch), x, targets, args.c,
                                     steps, args.torch_device)
        if attack is not None:
            contenders["torchattacks"], torchattacks_rows = attack
    passes = count_rows(model)
    timings = alternate(contenders, repeats)
    for name in passes:
        model.__dict__.pop(name, None)                                 # the class's again
    seconds, r = timings["npdistill"]
    results[f"npdistill_{best}_one_c"] = summarize(f"npdistill ({best}), one c", seconds, x,
                                                   r.x_adv, model, targets, r.iterations.sum())
    if passes["forward"]:
        share = 1 - passes["backward"] / passes["forward"]
        results[f"npdistill_{best}_one_c"]["backward_skipped"] = share
        print(f"  images whose f was 0 and skipped the backward pass: {share:.0%} of image-steps")
    if "torchattacks" in timings:
        seconds, adv = timings["torchattacks"]
        results["torchattacks"] = summarize(f"torchattacks CW ({args.torch_device})", seconds, x,
                                            adv.astype(np.float32), model, targets,
                                            sum(torchattacks_rows) // repeats)
    m = min(n, args.art_images, 5) if args.quick else min(n, args.art_images)
    if twin is not None and m > 0:                                     # --art-images 0: no ART
        art = run_art(torch, twin, x[:m], targets[:m], args.c, steps, args.art_binary_steps,
                      model)
        if art:
            results.update(art)
            seconds, r = common.timed(lambda: ours(args.art_binary_steps, m), 1)
            results["npdistill_binary_search"] = summarize(
                f"npdistill, {args.art_binary_steps} binary steps", seconds, x[:m], r.x_adv,
                model, targets[:m])

    summary = {"machine": common.machine(), "images": n, "steps": steps, "c": args.c,
               "npdistill_s_per_image": results[f"npdistill_{best}_one_c"]["seconds_per_image"],
               "results": results}
    for peer, mine in (("torchattacks", f"npdistill_{best}_one_c"),
                       ("art", "npdistill_binary_search")):
        if peer in results and mine in results:
            ratio = results[peer]["seconds_per_image"] / results[mine]["seconds_per_image"]
            summary[f"speedup_vs_{peer}"] = ratio
            print(f"npdistill / {peer}: {ratio:.2f}x faster (same budget)")
            if "ms_per_image_step" in results[peer] and "ms_per_image_step" in results[mine]:
                ratio = results[peer]["ms_per_image_step"] / results[mine]["ms_per_image_step"]
                summary[f"speedup_per_step_vs_{peer}"] = ratio
                print(f"npdistill / {peer}: {ratio:.2f}x faster per image-step")
    if args.json:
        print(json.dumps(summary))


def count_rows(model):
    """Count the images of every forward and backward pass of ``model`` (CPU backends,
    where the attack calls the model itself): {"forward": n, "backward": n}."""
    counts = {"forward": 0, "backward": 0}
    if nd.kernels.backend() == "cuda":
        return counts
    for name in counts:
        method = getattr(model, name)

        def counted(batch, *args, _method=method, _name=name, **kwargs):
            counts[_name] += len(batch)
            return _method(batch, *args, **kwargs)
        setattr(model, name, counted)
    return counts


def alternate(contenders, repeats):
    """name -> (median seconds, last result) of each contender, run in turns: one call
    each per round, so that a passing load on a shared machine hits them alike."""
    times = {name: [] for name in contenders}
    results = {}
    for _ in range(repeats):
        for name, fn in contenders.items():
            began = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - began)
    return {name: (statistics.median(times[name]), results[name]) for name in contenders}


def torchattacks_runner(torch, twin, x, targets, c, steps, device="cpu"):
    """(a function running torchattacks' CW on x with the twin on ``device``, the list to
    which each run appends the images of every forward pass of the twin: one pass per
    Adam step), or None."""
    try:
        import torchattacks
    except ImportError:
        print("torchattacks not installed: skipped (pip install torchattacks)")
        return None
    twin = twin.to(device)
    attack = torchattacks.CW(twin, c=c, kappa=0, steps=steps, lr=1e-2)
    target_tensor = torch.from_numpy(targets).to(device)
    attack.set_mode_targeted_by_function(lambda images, labels: target_tensor[:len(images)])
    xs = torch.from_numpy(x).to(device)
    attack(xs[:2], target_tensor[:2])                                   # warm-up
    rows = []

    def run():
        hook = twin.register_forward_pre_hook(lambda module, inputs: rows.append(len(inputs[0])))
        try:
            return attack(xs, target_tensor).cpu().numpy()
        finally:
            hook.remove()
    return run, rows


def run_art(torch, twin, x, targets, c, steps, binary_steps, model):
    try:
        from art.attacks.evasion import CarliniL2Method
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        print("IBM ART not installed: skipped (pip install adversarial-robustness-toolbox)")
        return {}
    classifier = PyTorchClassifier(twin, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                                   nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")
    attack = CarliniL2Method(classifier, confidence=0.0, targeted=True, learning_rate=1e-2,
                             binary_search_steps=binary_steps, max_iter=steps, initial_const=c,
                             batch_size=len(x), verbose=False)
    onehot = np.eye(10, dtype=np.float32)[targets]
    seconds, adv = common.timed(lambda: attack.generate(x, y=onehot), 1)
    return {"art": summarize(f"ART CarliniL2Method, {binary_steps} binary steps", seconds, x,
                             adv.astype(np.float32), model, targets)}


if __name__ == "__main__":
    main()
