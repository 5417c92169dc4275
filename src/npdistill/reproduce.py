"""Defensive distillation end to end on MNIST or CIFAR-10: the papers' tables and figures.

Papernot et al. (2016, S&P), "Distillation as a Defense to Adversarial
Perturbations against Deep Neural Networks": JSMA success and the
adversarial-gradient amplitude against the distillation temperature;
Papernot & McDaniel (2016), "On the Effectiveness of Defensive Distillation":
FGSM; Carlini & Wagner (2017), "Towards Evaluating the Robustness of Neural
Networks" (and "Defensive Distillation is Not Robust to Adversarial
Examples"): the CW attacks still succeed on the distilled net.

``reproduce(out_dir)`` trains (or reloads from ``out_dir/models``) the
undistilled baseline and, for every T, a teacher at T and its distilled
student, attacks each deployed net at T = 1, and writes results.json,
results.md (measured beside the papers' numbers) and PNG figures.
"""
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import attacks, kernels, metrics
from .benchmarks import BENCHMARKS, PAPER_MNIST, REPRODUCIBLE, benchmark
from ._checks import check_output_dir, check_positive
from ._files import write_text
from .defenses.distillation import distill, tempered_steps
from .distributed import concatenate
from .placement import passes
from .reproduce_report import (CLAIMS, claims, claims_over_seeds,  # noqa: F401
                               markdown_table, spread, spread_table)
from .runs import Runner, RunProgress, load_data, remove_stale, say, write_results
from .train import data_checksum, train

TEMPERATURES = (1, 2, 5, 10, 20, 30, 40, 50, 100)
RECIPE = 2          # the run cache's recipe key: 2 = distill's default at every T (was 1)
EXAMPLES = 12        # attacks per measure kept for the grid of clean vs adversarial digits
PAPER = PAPER_MNIST
# the data sets with the papers' numbers whose protocol is this module's (EMNIST's is
# reproduce_emnist's)
DATASETS = tuple(name for name in REPRODUCIBLE if BENCHMARKS[name].protocol == "reproduce")


@dataclass(frozen=True)
class Settings:
    """What a run measures, and on how much."""
    dataset: str = "mnist"           # one of DATASETS (benchmarks.py)
    temperatures: tuple = TEMPERATURES
    epochs: int = 3
    batch_size: int | None = None    # None: the net's default (the papers' 128)
    decay_every: int | None = None   # the learning rate times decay_factor every this many
    decay_factor: float | None = None  #   epochs; None: the net's default (halved every 10)
    train_limit: int | None = None   # None: the whole training split
    validate: bool = True            # each net's test accuracy after every epoch (progress)
    seed: int = 0
    jsma_samples: int = 100          # x 9 targets: the paper's 900 attacks
    fgsm_images: int | None = None   # None: the whole test set
    eps: float = 0.3
    gradient_images: int = 1000      # amplitude histograms and the masking diagnostic
    cw_images: int = 20
    cw_iterations: int = 1000
    cw_binary_steps: int = 9
    cw_c: float | None = None        # the first c; None: each attack's reference default
    cw_batch: int = 10               # CW attacks its images in batches of this many, one
    #   after another here or side by side on Dask workers: the same batches either way
    #   (a product's last bits depend on its row count), so the same answer
    attacks: tuple = field(default=("jsma", "fgsm", "cw"))
    seeds: int = 1                   # nets trained with seed .. seed + seeds - 1 (spread)

    def training_key(self):
        """What decides whether a saved model can be reused."""
        return {"epochs": self.epochs, "batch_size": self.batch_size,
                "decay_every": self.decay_every, "decay_factor": self.decay_factor,
                "train_limit": self.train_limit, "seed": self.seed}


# The quick run: every claim of CLAIMS holds on seeds 0-4 in under 5 minutes on 2 cores
# (docs/RESULTS.md). Five nets on the whole split, 2 epochs at batch 64 with the rate cut
# to 0.3x after the first (one epoch is not enough: `reproduce --quick --epochs 1 --seed 2`
# leaves the baseline below 97%); no per-epoch test pass; CW L2 alone, on 20 images.
QUICK = Settings(temperatures=(20, 100), epochs=2, batch_size=64, decay_every=1,
                 decay_factor=0.3, validate=False, jsma_samples=10, fgsm_images=500,
                 gradient_images=100, cw_images=20, cw_iterations=1000, cw_binary_steps=5,
                 cw_c=1.0, attacks=("jsma", "fgsm", "cw_l2"))
# CIFAR-10's: its net costs ~10x MNIST's per image, so 3,000 images at its own schedule and
# a few CW steps: a few minutes, the direction of each effect (its bars are not MNIST's).
QUICK_CIFAR10 = replace(QUICK, batch_size=None, decay_every=None, decay_factor=None,
                        train_limit=3000, jsma_samples=4, cw_images=3, cw_iterations=200,
                        cw_binary_steps=3)


def model_key(name):
    """"baseline", or the temperature written as in the papers' tables ("20", "2.5")."""
    return name if name == "baseline" else f"{name:g}"


def measure_path(folder, name, what):
    """Where a measure ``what`` of the net ``name`` ("baseline" or a temperature) is saved."""
    return folder / f"{'baseline' if name == 'baseline' else f'T{model_key(name)}'}_{what}.npz"


def train_seconds(runner, models, teachers):
    """The training seconds recorded in the deployed nets and their teachers (each once)."""
    nets = {id(net): net for net in [runner.value(t) for t in teachers] + list(models.values())}
    return [m.metadata["train_seconds"] for m in nets.values() if "train_seconds" in m.metadata]


def submit_models(settings, data, out_dir, progress, runner):
    """({"baseline": handle, T: the distilled student's handle, ...}, [the teachers'
    handles]), the nets started on ``runner`` (runs.Runner), which trains them here at once
    or returns Dask futures. Teachers and students are saved in out_dir/models and reused by
    a later run with the same training settings. The teacher at T = 1 is the baseline (the
    same recipe and seed): trained once."""
    (x_train, y_train), (x_test, y_test) = data
    key = {**settings.training_key(), "data": data_checksum(x_train, y_train),
           "recipe": RECIPE}
    options = dict(epochs=settings.epochs, batch_size=settings.batch_size,
                   decay_every=settings.decay_every, decay_factor=settings.decay_factor,
                   validation=(x_test, y_test) if settings.validate else None,
                   progress=runner.worker_progress)
    folder = Path(out_dir) / "models"

    def recipe(temperature):
        # distill's default at every T, teachers included: the logits layer's learning
        # rate x T ** 2, nothing else scaled, at the net's own learning rate (MNIST's 0.1,
        # CIFAR-10's 0.01). The former recipe (every gradient x T and a tenth of the
        # rate above T = 1) was fragile: the paper's rate diverged at T >= 20.
        T = float(temperature)
        return dict(temperature=T, lr=lr, **tempered_steps(T), **options)

    net = benchmark(settings.dataset).net
    lr = net(seed=0).metadata["training_defaults"]["lr"]

    def trained(temperature, seed):
        return train(net(seed=seed), (x_train, y_train), seed=seed, **recipe(temperature))[0]

    def distilled(teacher, temperature):
        return distill(teacher, (x_train, y_train), seed=settings.seed + 1,
                       **recipe(temperature))

    models = {"baseline": runner.model(folder / "baseline.npz", key, trained, 1.0,
                                       settings.seed)}
    teachers = []
    for T in settings.temperatures:
        say(progress, f"temperature {T}: teacher, then its distilled student")
        teacher = models["baseline"] if float(T) == 1.0 else runner.model(
            folder / f"teacher_T{model_key(T)}.npz", key, trained, float(T), settings.seed)
        models[T] = runner.model(folder / f"student_T{model_key(T)}.npz",
                                 lambda teacher, _: {**key, "teacher": teacher.checksum()},
                                 distilled, teacher, float(T))
        teachers.append(teacher)
    return models, teachers


def evaluate(model, name, settings, test, rng_seed, progress=True):
    """Every measure of one deployed net (T = 1). Returns a JSON-ready dict. The net is
    placed on the active backend once (under cuda: its weights copied to the device once),
    and every metric and attack runs on those passes."""
    x_test, y_test = test
    rng = np.random.default_rng(rng_seed)
    temperature = model.metadata.get("training_temperature", 1.0)
    model = passes(model)
    row = {"accuracy": metrics.accuracy(model, x_test, y_test),
           "training_temperature": temperature}
    examples = {}
    g = rng.choice(len(x_test), min(settings.gradient_images, len(x_test)), replace=False)
    amplitudes = metrics.adversarial_gradient_amplitude(model, x_test[g])
    row["gradient_amplitude_histogram"] = metrics.amplitude_histogram(amplitudes).tolist()
    row["gradient_amplitude_median"] = float(np.median(amplitudes))
    row["gradient_masking"] = metrics.gradient_masking(model, x_test[g], y_test[g])
    if "jsma" in settings.attacks:
        pick = rng.choice(len(x_test), settings.jsma_samples, replace=False)
        say(progress, f"{name}: JSMA on {len(pick)} samples x {model.num_classes - 1} targets")
        r = attacks.jsma_all_targets(model, x_test[pick], y_test[pick], theta=1.0, gamma=0.145,
                                     progress=False)
        ok = r.success
        row["jsma"] = {"attacks": len(ok), "success": r.success_rate,
                       "mean_l0": float(r.l0[ok].mean()) if ok.any() else None,
                       "mean_changed_fraction": float(r.l0[ok].mean() / x_test[0].size)
                       if ok.any() else None}
        k = min(EXAMPLES, len(ok))              # sample-major: K - 1 targets per sample
        examples["jsma"] = (x_test[pick[np.arange(k) // (model.num_classes - 1)]], r.x_adv[:k],
                            r.target[:k].tolist(), ok[:k].tolist())
    if "fgsm" in settings.attacks:
        n = len(x_test) if settings.fgsm_images is None else settings.fgsm_images
        idx = rng.choice(len(x_test), n, replace=False) if n < len(x_test) else np.arange(n)
        say(progress, f"{name}: FGSM eps={settings.eps} on {n} test images")
        r = attacks.fgsm(model, x_test[idx], y_test[idx], eps=settings.eps, progress=False)
        T = row["training_temperature"]
        countered = attacks.fgsm(model, x_test[idx], y_test[idx], eps=settings.eps, T=T,
                                 progress=False)
        row["fgsm"] = {"images": int(n), "success": r.success_rate,
                       "unperturbed": float((r.l0 == 0).mean()),
                       "success_logits_divided_by_T": countered.success_rate}
        examples["fgsm"] = (x_test[idx[:EXAMPLES]], r.x_adv[:EXAMPLES], None,
                            r.success[:EXAMPLES].tolist())
    return row, examples


# quickest first
CW_ATTACKS: dict = {"l2": attacks.cw_l2, "linf": attacks.cw_linf, "l0": attacks.cw_l0}
ATTACK_CHOICES = ("jsma", "fgsm", "cw", *(f"cw_{norm}" for norm in CW_ATTACKS))


def cw_norms(chosen):
    """The CW norms that ``chosen`` (names of ATTACK_CHOICES) asks for: "cw" means all."""
    return [norm for norm in CW_ATTACKS if "cw" in chosen or f"cw_{norm}" in chosen]


def cw_images(settings, test, rng_seed):
    """The test images CW attacks and their targets: the same for every norm and model."""
    x_test, y_test = test
    rng = np.random.default_rng(rng_seed)
    pick = rng.choice(len(x_test), settings.cw_images, replace=False)
    return x_test[pick], attacks.random_targets(y_test[pick], 10, rng)


def cw_batches(settings):
    """How many batches of at most settings.cw_batch images the CW images make."""
    return -(-settings.cw_images // settings.cw_batch)


def cw_piece(model, norm, settings, test, rng_seed, batch, progress=True):
    """Targeted CW ``norm`` ("l2", "l0" or "linf") on the ``batch``-th batch of the CW
    images (settings.cw_batch of them): an AttackResult."""
    x, target = cw_images(settings, test, rng_seed)
    rows = np.arange(batch * settings.cw_batch, min(len(x), (batch + 1) * settings.cw_batch))
    options = dict(binary_search_steps=settings.cw_binary_steps) if norm == "l2" else {}
    if settings.cw_c is not None:
        options["c"] = settings.cw_c
    say(progress, f"CW {norm} on {len(rows)} images, {settings.cw_iterations} iterations")
    return CW_ATTACKS[norm](model, x[rows], target=target[rows],
                            max_iterations=settings.cw_iterations, progress=progress, **options)


def cw_row(pieces, model, norm, settings, test, rng_seed):
    """(row, examples) of CW ``norm`` from its pieces (AttackResults, in order); the other
    arguments are the pieces' (``model`` unused)."""
    x, target = cw_images(settings, test, rng_seed)
    r = concatenate(pieces)
    ok = r.success
    row = {"images": len(x), "success": r.success_rate,
           "mean_distortion": float(getattr(r, norm)[ok].mean()) if ok.any() else None}
    return row, {f"cw_{norm}": (x[:EXAMPLES], r.x_adv[:EXAMPLES], target[:EXAMPLES].tolist(),
                                ok[:EXAMPLES].tolist())}


def evaluate_cw(model, norm, settings, test, rng_seed, progress=True):
    """Targeted CW ``norm`` on settings.cw_images test images, here: (row, examples)."""
    args = (model, norm, settings, test, rng_seed)
    return cw_row([cw_piece(*args, b, progress) for b in range(cw_batches(settings))], *args)


def measure_keys(settings, model, test):
    """What decides whether a saved measure of ``model`` can be reused: (attacks, cw)."""
    common = {"model": model.checksum(), "test": data_checksum(*test), "seed": settings.seed,
              "recipe": RECIPE}
    attack_key = {**common, "jsma_samples": settings.jsma_samples,
                  "fgsm_images": settings.fgsm_images, "eps": settings.eps,
                  "gradient_images": settings.gradient_images,
                  "attacks": [a for a in settings.attacks if not a.startswith("cw")]}
    cw_key = {**common, "images": settings.cw_images, "iterations": settings.cw_iterations,
              "binary_steps": settings.cw_binary_steps, "c": settings.cw_c,
              "batch": settings.cw_batch}
    return attack_key, cw_key


def reproduce(out_dir, settings=Settings(), data_path=None, progress=True, download=False,
              client=None, heal=True):
    """Run everything; write results.json, results.md and the figures into ``out_dir``.

    ``data_path``: the dataset's folder (default: $NPDISTILL_DATA/mnist or
    .../cifar-10-batches-bin, else the cache);
    ``download``: fetch it there when missing. ``progress``: True (lines, and after every
    task — a net or a measure, done or reused — the count of tasks and an overall ETA),
    False, or a callable given every ``npdistill.progress.ProgressEvent`` (stage
    "reproduce" per task, and those of the training and attacks inside). ``client``: a
    ``distributed.Client``: the nets and measures run as a Dask task graph on its workers
    (the nets side by side, students after their teachers; a net's measures as soon as it
    is back, the CW attacks' batches side by side); the files and results are those of
    the serial run. ``heal``: a saved net or measure that fails its checks (damaged,
    truncated) is moved aside to <name>.damaged, said, and computed again; False: the run
    stops with the error. Returns the results dict (also in results.json).
    """
    from . import plots                              # matplotlib only when plotting

    check_positive(settings.seeds, "settings.seeds", integer=True)
    if settings.seeds > 1:
        return _over_seeds(out_dir, settings, data_path, progress, download, client, heal)
    began = time.perf_counter()
    if settings.dataset not in DATASETS:
        raise ValueError(f"settings.dataset must be one of {tuple(DATASETS)}, "
                         f"got {settings.dataset!r}")
    check_positive(settings.cw_batch, "settings.cw_batch", integer=True)
    paper = benchmark(settings.dataset).paper
    out_dir = check_output_dir(out_dir, "out_dir")
    temperatures = len(settings.temperatures)
    nets = 1 + 2 * temperatures - (1 in settings.temperatures)     # teacher_T1 is the baseline
    progress = RunProgress(progress, nets + 1 + temperatures + 2 * len(cw_norms(settings.attacks)))
    runner = Runner(progress, client, heal)
    (x_train, y_train), (x_test, y_test) = load_data(data_path, settings.train_limit, download,
                                                     benchmark(settings.dataset).load)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(progress, out_dir, out_dir / "models", out_dir / "measures")
    say(progress, f"{len(x_train):,} training images, {len(x_test):,} test images, "
                   f"temperatures {list(settings.temperatures)}")
    handles, teachers = submit_models(settings, ((x_train, y_train), (x_test, y_test)),
                                      out_dir, progress, runner)
    folder = out_dir / "measures"
    test, inside = (x_test, y_test), runner.worker_progress
    cw_nets = ("baseline", max(settings.temperatures))
    models, keys, measures = {}, {}, {}                  # measures: (name, what) -> handle

    def label(name):
        return "the baseline" if name == "baseline" else f"T={name}"

    def measure_cw(name, norm):
        say(progress, f"Carlini-Wagner {norm} on {label(name)}")
        # its batches: side by side on Dask workers
        measures[name, f"cw_{norm}"] = runner.split_measure(
            measure_path(folder, name, f"cw_{norm}"), {**keys[name][1], "norm": norm},
            cw_piece, cw_row, cw_batches(settings),
            (models[name], norm, settings, test, settings.seed + 2000), inside)

    for name, model in runner.as_ready(handles):       # on Dask: as each net comes back
        models[name], keys[name] = model, measure_keys(settings, model, test)
        # one seed for every model: the same samples are attacked on each
        measures[name, "attacks"] = runner.measure(
            measure_path(folder, name, "attacks"), keys[name][0], evaluate, model, label(name),
            settings, test, settings.seed + 1000, inside)
        if client is not None and name in cw_nets:
            for norm in cw_norms(settings.attacks):    # the longest tasks: start them first
                measure_cw(name, norm)
    if client is None:
        # here the CW attacks last: they take the longest, and the table above is complete
        # without them; the quickest norm first on both nets, so that a cut-off run has the
        # most to show
        for norm in cw_norms(settings.attacks):
            for name in cw_nets:
                measure_cw(name, norm)
    rows, examples, cw, seconds = {}, {}, {}, 0.0
    order = [(name, "attacks") for name in handles] + [
        (name, f"cw_{norm}") for norm in cw_norms(settings.attacks) for name in cw_nets]
    for name, what in order:
        row, example, spent = runner.value(measures[name, what])
        examples.setdefault(model_key(name), {}).update(example)
        seconds += spent
        if what == "attacks":
            rows[model_key(name)] = row
        else:
            cw.setdefault(model_key(name), {})[what[len("cw_"):]] = row
    trained = train_seconds(runner, models, teachers)
    results = {"settings": {**asdict(settings), "train_images": len(x_train),
                            "test_images": len(x_test),
                            "input_features": int(np.prod(x_test.shape[1:]))},
               "paper": {**paper, "jsma_success": {str(k): v for k, v in paper["jsma_success"].items()},
                         "fgsm_success": {str(k): v for k, v in paper["fgsm_success"].items()}},
               "models": rows, "cw": cw, "seconds": time.perf_counter() - began,
               "measure_seconds": seconds, "train_seconds": sum(trained),
               "nets_timed": len(trained), "environment": kernels.environment()}
    results["claims"] = claims(results)
    return write_results(out_dir, results, markdown_table(results),
                         lambda: plots.reproduction_figures(results, examples, out_dir),
                         progress)


def _over_seeds(out_dir, settings, data_path, progress, download, client, heal):
    """``reproduce`` once per seed (settings.seed ..), each into OUT/seed<S>, then every
    cell as its mean and range over the seeds: results.json ("spread", and "per_seed":
    each seed's results), results.md and the spread figure."""
    from . import plots

    out_dir = check_output_dir(out_dir, "out_dir")
    seeds = list(range(settings.seed, settings.seed + settings.seeds))
    per_seed = {}
    for seed in seeds:
        say(progress, f"seed {seed} ({seeds.index(seed) + 1} of {len(seeds)}) into "
                      f"{out_dir / f'seed{seed}'}")
        per_seed[str(seed)] = reproduce(out_dir / f"seed{seed}", replace(settings, seed=seed,
                                                                         seeds=1),
                                        data_path, progress, download, client, heal)
    first = per_seed[str(seeds[0])]
    results = {"settings": {**first["settings"], "seed": seeds[0], "seeds": len(seeds)},
               "paper": first["paper"], "seeds": seeds,
               "spread": spread([r["models"] for r in per_seed.values()]),
               "cw_spread": spread([r["cw"] for r in per_seed.values()]),
               "claims": claims_over_seeds(per_seed),
               "per_seed": per_seed, "environment": kernels.environment()}
    write_text(out_dir / "results.json", json.dumps(results, indent=1), "results")
    write_text(out_dir / "results.md", spread_table(results), "results table")
    plots.seed_spread(results, out_dir / "spread_vs_temperature.png")
    say(progress, f"wrote {out_dir / 'results.json'}, results.md and spread_vs_temperature.png "
                  f"over seeds {seeds}")
    return results


def settings_from(quick=False, dataset="mnist", **overrides):
    """The full or quick Settings for ``dataset`` (its FGSM eps), with ``overrides``."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS} here, got {dataset!r}")
    eps = benchmark(dataset, reproducible=True).eps
    quick_settings = QUICK_CIFAR10 if dataset == "cifar10" else QUICK
    base = replace(quick_settings if quick else Settings(), dataset=dataset, eps=eps)
    if overrides.get("seeds") is not None:
        check_positive(overrides["seeds"], "seeds", integer=True)
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
