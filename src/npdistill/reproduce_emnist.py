"""Defensive distillation on EMNIST balanced (47 classes): the course report's protocol.

The report repeats Papernot et al.'s study on EMNIST's balanced split and adds what the
MNIST papers do not: a 47-class net (``architectures.emnist_net``), a temperature sweep
T in {1, 2, 5, 10, 35, 50, 100}, a targeted iterative FGSM aimed at one class (46) over
the whole test set, and the three Carlini-Wagner attacks checked against every distilled
net at once. ``reproduce(out_dir)`` trains (or reloads from ``out_dir/models``) the
undistilled net and, for every T, a teacher and its distilled student, exactly as the
MNIST reproduction does (``reproduce.submit_models``), then measures:

- each deployed net's test accuracy, adversarial-gradient amplitude and JSMA success (the
  MNIST reproduction's protocol: each sample towards each of the other 46 classes, the
  same gamma as a share of the features);
- I-FGSM targeted at ``target_class``, crafted on the undistilled net over the test set:
  how many images land in that class, and the same adversarial images given to every
  distilled net (how many it still classifies correctly; the report: about 86% at
  T = 100); each distilled net attacked directly too;
- CW L0, L2 and L-inf, untargeted and targeted, crafted on the undistilled net: the share
  of images whose adversarial example every distilled net misclassifies at once.

It writes results.json, results.md (measured beside the report's numbers, "-" where it
gives none) and PNG figures; everything saved under ``out_dir`` is reused by a rerun, so a
cut-off run resumes, and ``client=`` runs the nets and measures on Dask workers.
"""
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from . import attacks, datasets, kernels
from ._checks import check_output_dir, check_positive
from .benchmarks import benchmark
from .distributed import concatenate
from .placement import passes
from .reproduce import (CW_ATTACKS, EXAMPLES, Settings, cw_batches, cw_norms, evaluate,
                        measure_keys, measure_path, model_key, submit_models, train_seconds)
from .runs import (Runner, RunProgress, load_data, percent, remove_stale, say,
                   write_results)
from .train import data_checksum

TEMPERATURES = (1, 2, 5, 10, 35, 50, 100)
DATASET = "emnist"
GOALS = ("untargeted", "targeted")


@dataclass(frozen=True)
class EmnistSettings(Settings):
    """What the EMNIST study measures, and on how much (the training fields as
    ``reproduce.Settings``; None for the batch, decay: the net's defaults, the report's)."""
    dataset: str = DATASET
    temperatures: tuple = TEMPERATURES
    epochs: int = 50                 # the report's
    jsma_samples: int = 20           # x 46 targets: 920 attacks (the MNIST paper's 900)
    attacks: tuple = ("jsma", "ifgsm", "cw")
    target_class: int = 46           # I-FGSM's target
    ifgsm_steps: int = 10
    ifgsm_step: float = 0.01         # the report's eps = 0.01, read as each step's size
    ifgsm_images: int | None = None  # None: the whole test set


# A few minutes on 2 cores on the real split: 5 nets on 20,000 training images, 2 epochs;
# JSMA on 2 samples x 46 targets, I-FGSM on 2,000 test images, each CW attack on 5.
QUICK = EmnistSettings(temperatures=(10, 100), epochs=2, batch_size=64, decay_every=1,
                       decay_factor=0.3, train_limit=20000, validate=False, jsma_samples=2,
                       gradient_images=100, ifgsm_images=2000, cw_images=5, cw_batch=5,
                       cw_iterations=200, cw_binary_steps=3)
ATTACK_CHOICES = ("jsma", "ifgsm", "cw", *(f"cw_{norm}" for norm in CW_ATTACKS))


def settings_from(quick=False, dataset=DATASET, **overrides):
    """The full or quick EmnistSettings, with ``overrides`` (None: keep the default)."""
    if dataset != DATASET:
        raise ValueError(f"dataset must be {DATASET!r} here, got {dataset!r}")
    if overrides.get("seeds") not in (None, 1):
        raise ValueError(f"seeds: the EMNIST study runs one seed, got {overrides['seeds']}")
    chosen = overrides.get("attacks") or ()
    unknown = [a for a in chosen if a not in ATTACK_CHOICES]
    if unknown:
        raise ValueError(f"attacks must be among {ATTACK_CHOICES}, got {unknown}")
    return replace(QUICK if quick else EmnistSettings(),
                   **{k: v for k, v in overrides.items() if v is not None})


# -- I-FGSM at one class -----------------------------------------------------------------
def ifgsm_readings(settings):
    """{reading: (step, total eps)}: the report's "eps = 0.01" read as each step's size
    ("step": 10 steps reach 0.1 in all) and as the whole budget ("total")."""
    step, steps = settings.ifgsm_step, settings.ifgsm_steps
    return {"step": (step, step * steps), "total": (step / steps, step)}


def ifgsm_images(settings, test, rng_seed):
    """The test images I-FGSM attacks: all of them, or settings.ifgsm_images drawn."""
    x_test, y_test = test
    n = len(x_test) if settings.ifgsm_images is None else min(settings.ifgsm_images,
                                                                len(x_test))
    if n == len(x_test):
        return x_test, y_test
    pick = np.sort(np.random.default_rng(rng_seed).choice(len(x_test), n, replace=False))
    return x_test[pick], y_test[pick]


def ifgsm_measure(models, settings, test, rng_seed, progress=True):
    """I-FGSM targeted at settings.target_class, crafted on models["baseline"] and given
    to every model ({name: model}); each other model also attacked directly. (row,
    examples)."""
    x, y = ifgsm_images(settings, test, rng_seed)
    aim, classes = settings.target_class, models["baseline"].num_classes
    target = np.full(len(x), aim)
    nets = {name: passes(model) for name, model in models.items()}
    row = {"images": len(x), "target_class": aim, "steps": settings.ifgsm_steps,
           "true_class_count": int((y == aim).sum())}
    examples = {}
    for reading, (step, eps) in ifgsm_readings(settings).items():
        say(progress, f"I-FGSM -> class {aim} ({reading}: step {step:g}, eps {eps:g}) on "
                      f"{len(x):,} images")
        adv = attacks.bim(nets["baseline"], x, target=target, eps=eps,
                          steps=settings.ifgsm_steps, step_size=step, progress=False).x_adv
        predicted = {name: net.predict(adv) for name, net in nets.items()}
        row[reading] = {
            "step": step, "eps": eps,
            "to_target": {model_key(n): int((p == aim).sum()) for n, p in predicted.items()},
            "accuracy": {model_key(n): float((p == y).mean()) for n, p in predicted.items()},
            "histogram": {model_key(n): np.bincount(p, minlength=classes).tolist()
                          for n, p in predicted.items()}}
        if reading == "step":
            k = min(EXAMPLES, len(x))
            examples["ifgsm"] = (x[:k], adv[:k], target[:k].tolist(),
                                 (predicted["baseline"][:k] == aim).tolist())
            row["examples"] = {"label": y[:k].tolist(),
                               "clean": {model_key(n): net.predict(x[:k]).tolist()
                                         for n, net in nets.items()},
                               "adversarial": {model_key(n): p[:k].tolist()
                                               for n, p in predicted.items()}}
    step, eps = ifgsm_readings(settings)["step"]
    row["on_itself"] = {}
    for name, net in nets.items():
        if name == "baseline":
            continue
        say(progress, f"I-FGSM -> class {aim} crafted on T={model_key(name)} itself")
        r = attacks.bim(net, x, target=target, eps=eps, steps=settings.ifgsm_steps,
                        step_size=step, progress=False)
        row["on_itself"][model_key(name)] = int(r.success.sum())
    return row, examples


# -- Carlini-Wagner, crafted on the undistilled net, given to every distilled one ---------
def cw_images(settings, test, rng_seed, classes):
    """The CW images, their labels and targets: the same for every norm and goal."""
    x_test, y_test = test
    rng = np.random.default_rng(rng_seed)
    pick = rng.choice(len(x_test), min(settings.cw_images, len(x_test)), replace=False)
    return x_test[pick], y_test[pick], attacks.random_targets(y_test[pick], classes, rng)


def cw_piece(base, students, norm, goal, settings, test, rng_seed, batch, progress=True):
    """CW ``norm`` (``goal``: "untargeted" or "targeted") on the undistilled net ``base``,
    the ``batch``-th batch of the CW images: an AttackResult (``students`` unused)."""
    x, y, target = cw_images(settings, test, rng_seed, base.num_classes)
    rows = np.arange(batch * settings.cw_batch, min(len(x), (batch + 1) * settings.cw_batch))
    labels = {"target": target[rows]} if goal == "targeted" else {"y": y[rows]}
    options = dict(binary_search_steps=settings.cw_binary_steps) if norm == "l2" else {}
    if settings.cw_c is not None:
        options["c"] = settings.cw_c
    say(progress, f"CW {norm} {goal} on {len(rows)} images, {settings.cw_iterations} "
                  f"iterations")
    return CW_ATTACKS[norm](base, x[rows], **labels, max_iterations=settings.cw_iterations,
                            progress=progress, **options)


def cw_row(pieces, base, students, norm, goal, settings, test, rng_seed):
    """(row, examples) of a CW attack from its pieces: its success on the undistilled net,
    and what each distilled net of ``students`` ({name: model}) makes of its examples."""
    x, y, target = cw_images(settings, test, rng_seed, base.num_classes)
    r = concatenate(pieces)
    read = {model_key(name): passes(net).predict(r.x_adv) for name, net in students.items()}

    def share_for_all(held):            # images for which ``held`` holds on every net
        return float(np.logical_and.reduce(held).mean()) if held else None

    row = {"images": len(x), "success": r.success_rate,
           "mean_distortion": float(getattr(r, norm)[r.success].mean()) if r.success.any()
           else None,
           "fooled": {name: float((p != y).mean()) for name, p in read.items()},
           "fools_all": share_for_all([p != y for p in read.values()])}
    if goal == "targeted":
        row["target_for_all"] = share_for_all([p == target for p in read.values()])
    shown = target if goal == "targeted" else None
    return row, {f"cw_{norm}_{goal}": (x[:EXAMPLES], r.x_adv[:EXAMPLES],
                                       None if shown is None else shown[:EXAMPLES].tolist(),
                                       r.success[:EXAMPLES].tolist())}


# -- the run -------------------------------------------------------------------------------
def reproduce(out_dir, settings=EmnistSettings(), data_path=None, progress=True,
              download=False, client=None, heal=True):
    """Run the report's protocol; write results.json, results.md and the figures into
    ``out_dir``. The arguments are ``reproduce.reproduce``'s (``data_path``: the folder
    holding emnist/, or emnist/ itself; ``download``: fetch NIST's archive when missing).
    Returns the results dict (also in results.json)."""
    from . import plots                              # matplotlib only when plotting

    began = time.perf_counter()
    if not isinstance(settings, EmnistSettings):
        raise TypeError(f"settings must be an EmnistSettings, got {type(settings).__name__}")
    check_positive(settings.cw_batch, "settings.cw_batch", integer=True)
    check_positive(settings.ifgsm_steps, "settings.ifgsm_steps", integer=True)
    check_positive(settings.ifgsm_step, "settings.ifgsm_step")
    if settings.seeds != 1:
        raise ValueError(f"settings.seeds: the EMNIST study runs one seed, got {settings.seeds}")
    chosen = benchmark(DATASET)
    out_dir = check_output_dir(out_dir, "out_dir")
    norms = cw_norms(settings.attacks)
    nets = 1 + 2 * len(settings.temperatures) - (1 in settings.temperatures)
    deployed = 1 + len(settings.temperatures)
    progress = RunProgress(progress, nets + deployed + ("ifgsm" in settings.attacks)
                           + len(GOALS) * len(norms))
    runner = Runner(progress, client, heal)
    (x_train, y_train), test = load_data(data_path, settings.train_limit, download, chosen.load)
    classes = datasets.emnist_classes(data_path)
    if "ifgsm" in settings.attacks and not 0 <= settings.target_class < len(classes):
        raise ValueError(f"settings.target_class must lie in 0..{len(classes) - 1}, got "
                         f"{settings.target_class}")
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = out_dir / "measures"
    remove_stale(progress, out_dir, out_dir / "models", folder)
    say(progress, f"EMNIST balanced: {len(x_train):,} training images, {len(test[0]):,} test "
                  f"images, {len(classes)} classes, temperatures {list(settings.temperatures)}")
    handles, teachers = submit_models(settings, ((x_train, y_train), test), out_dir, progress,
                                      runner)
    ready = dict(runner.as_ready(handles))            # on Dask: trained side by side
    models = {name: ready[name] for name in handles}
    students = {name: model for name, model in models.items() if name != "baseline"}
    inside = runner.worker_progress
    everyone = {"models": [m.checksum() for m in models.values()],
                "test": data_checksum(*test), "seed": settings.seed}

    def label(name):
        return "the baseline" if name == "baseline" else f"T={name}"

    measures = {}
    for name, model in models.items():
        measures[name] = runner.measure(measure_path(folder, name, "attacks"),
                                        measure_keys(settings, model, test)[0],
                                        evaluate, model, label(name), settings, test,
                                        settings.seed + 1000, inside)
    if "ifgsm" in settings.attacks:
        say(progress, f"I-FGSM at class {settings.target_class} on the undistilled net")
        key = {**everyone, "images": settings.ifgsm_images, "steps": settings.ifgsm_steps,
               "step": settings.ifgsm_step, "target": settings.target_class}
        measures["ifgsm"] = runner.measure(folder / "ifgsm.npz", key, ifgsm_measure, models,
                                           settings, test, settings.seed + 3000, inside)
    cw_key = {**everyone, "images": settings.cw_images, "iterations": settings.cw_iterations,
              "binary_steps": settings.cw_binary_steps, "c": settings.cw_c,
              "batch": settings.cw_batch}
    for norm in norms:                                   # quickest first
        for goal in GOALS:
            say(progress, f"Carlini-Wagner {norm} {goal} on the undistilled net")
            measures[norm, goal] = runner.split_measure(
                folder / f"cw_{norm}_{goal}.npz", {**cw_key, "norm": norm, "goal": goal},
                cw_piece, cw_row, cw_batches(settings),
                (models["baseline"], students, norm, goal, settings, test,
                 settings.seed + 2000), inside)
    rows, cw, examples, ifgsm, seconds = {}, {}, {}, None, 0.0
    for what, handle in measures.items():
        row, example, spent = runner.value(handle)
        seconds += spent
        if what == "ifgsm":
            ifgsm = row
            examples.setdefault("baseline", {}).update(example)
        elif isinstance(what, tuple):
            cw.setdefault(what[0], {})[what[1]] = row
            examples.setdefault("baseline", {}).update(example)
        else:
            rows[model_key(what)] = row
            examples.setdefault(model_key(what), {}).update(example)
    trained = train_seconds(runner, models, teachers)
    results = {"settings": {**asdict(settings), "train_images": len(x_train),
                            "test_images": len(test[0]),
                            "input_features": int(np.prod(test[0].shape[1:]))},
               "paper": chosen.paper, "classes": classes, "models": rows, "ifgsm": ifgsm,
               "cw": cw, "seconds": time.perf_counter() - began, "measure_seconds": seconds,
               "train_seconds": sum(trained), "nets_timed": len(trained),
               "environment": kernels.environment()}
    return write_results(out_dir, results, markdown_table(results),
                         lambda: plots.emnist_figures(results, examples, out_dir), progress)


# -- the table beside the report ----------------------------------------------------------
def _count(value, total):
    return f"{value:,} of {total:,} ({100 * value / total:.1f}%)" if total else "-"


def markdown_table(results):
    """results.md: each measure beside the report's figure ("-" where it gives none)."""
    s, paper, rows = results["settings"], results["paper"], results["models"]
    temps = sorted((k for k in rows if k != "baseline"), key=float)
    base = rows["baseline"]
    lines = [f"# Defensive distillation on EMNIST balanced ({len(results['classes'])} classes)",
             "", f"{s['train_images']:,} training images (the report: "
                 f"{paper['train_images']:,}), {s['test_images']:,} test images, "
                 f"{s['epochs']} epochs per net, seed {s['seed']}.", "",
             "| measure | report | measured |", "|---|---|---|",
             f"| test accuracy, no distillation | {percent(paper['baseline_accuracy'])} | "
             f"{percent(base['accuracy'])} |"]
    if temps:
        cost = {T: base["accuracy"] - rows[T]["accuracy"] for T in temps}
        worst = max(cost, key=cost.get)
        lines.append(f"| largest accuracy cost of distillation over T | "
                     f"< {100 * paper['max_accuracy_cost']:.2f} points | "
                     f"{100 * cost[worst]:.2f} points (T = {worst}) |")
    for T in temps:
        lines.append(f"| test accuracy, T = {T} | - | {percent(rows[T]['accuracy'])} |")
    for name in ["baseline"] + temps:
        jsma = rows[name].get("jsma")
        if jsma:
            who = "no distillation" if name == "baseline" else f"T = {name}"
            lines.append(f"| JSMA success ({jsma['attacks']} attacks), {who} | falls as T "
                         f"rises | {percent(jsma['success'])} |")
    ifgsm = results.get("ifgsm")
    if ifgsm:
        n, aim = ifgsm["images"], ifgsm["target_class"]
        whole = n == s["test_images"]
        reported = paper["ifgsm"]
        for reading in ("step", "total"):
            r = ifgsm[reading]
            report = (f"about {_count(reported['to_target'], reported['images'])}"
                      if reading == "step" and whole else "-")
            lines.append(f"| I-FGSM -> class {aim} ({ifgsm['steps']} steps of {r['step']:g}, "
                         f"eps {r['eps']:g}), crafted on and given to the undistilled net: "
                         f"images in class {aim} | {report} | "
                         f"{_count(r['to_target']['baseline'], n)} |")
        r = ifgsm["step"]
        for T in temps:
            report = (f"about {percent(reported['transfer_accuracy'][T], 0)}"
                      if T in reported["transfer_accuracy"] else "-")
            lines.append(f"| the same images given to T = {T}: classified correctly | "
                         f"{report} | {percent(r['accuracy'][T])} |")
        for T, hits in ifgsm["on_itself"].items():
            lines.append(f"| I-FGSM -> class {aim} crafted on T = {T} itself: images in "
                         f"class {aim} | - | {_count(hits, n)} |")
    for norm, goals in results["cw"].items():
        for goal, r in goals.items():
            report = paper["cw_fools_all"].get(f"{norm}_{goal}", "-")
            lines.append(f"| CW {norm} {goal} on the undistilled net ({r['images']} images): "
                         f"success | - | {percent(r['success'], 0)} |")
            lines.append(f"| ... its examples misclassified by every distilled net at once | "
                         f"{report} | {percent(r['fools_all'], 0)} |")
    lines += ["", "I-FGSM's eps = 0.01 is read as the size of each of its 10 steps (so at "
              "most 0.1 in all): 0.01 in all moves a pixel by at most 2.5 grey levels of 255, "
              "and the row with eps 0.01 in all shows how few images that sends to the "
              "target. The CW examples are crafted on the undistilled net (untargeted: away "
              "from the true class; targeted: towards a random other class) and given "
              "unchanged to every distilled net.", "",
              f"Training {results['train_seconds'] / 60:.1f} min over {results['nets_timed']} "
              f"nets, measures {results['measure_seconds'] / 60:.1f} min; the whole run "
              f"{results['seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)

