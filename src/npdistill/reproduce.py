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

from . import attacks, datasets, kernels, metrics
from ._checks import check_output_dir, check_positive
from ._files import write_text
from .defenses.distillation import distill, tempered_steps
from .distributed import concatenate
from .nn import architectures
from .runs import Runner, RunProgress, load_data, percent, remove_stale, say
from .train import data_checksum, train

TEMPERATURES = (1, 2, 5, 10, 20, 30, 40, 50, 100)
RECIPE = 2          # the run cache's recipe key: 2 = distill's default at every T (was 1)
EXAMPLES = 12        # attacks per measure kept for the grid of clean vs adversarial digits
# The papers' qualitative claims as ``claims`` checks them on a run (the bars --quick meets on
# seeds 0-4, docs/RESULTS.md): the undistilled net's accuracy; the most distillation may
# cost at any T; JSMA at T >= 20 and FGSM at T = 100 succeed at most this share of the
# baseline's rate; the median adversarial gradient falls this many times by T = 100; CW L2
# breaks at least this share of its images on the baseline and at T = 100.
CLAIMS = {"baseline_accuracy": 0.97, "accuracy_cost": 0.02, "attack_share": 0.2,
          "gradient_fall": 1e10, "cw_success": 0.9}

# The papers' numbers (MNIST). Papernot et al. 2016, table/figure 5 and section V;
# Papernot & McDaniel 2016; Carlini & Wagner 2017, table IV and section VIII.
PAPER_MNIST = {
    "train_images": 60000,
    "baseline_accuracy": 0.9951,
    "max_accuracy_cost": 0.0128,
    "jsma_success": {"baseline": 0.9589, 1: 0.91, 2: 0.8223, 5: 0.2467, 10: 0.0678, 20: 0.0134,
                     30: 0.0144, 40: 0.0045, 50: 0.0145, 100: 0.0045},
    "fgsm_success": {"baseline": 0.8803, 100: {"below": 0.015}},   # "< 1.5%" at T = 100
    "cw": {"baseline": {"success": 1.0, "l0": 16, "l2": 1.76, "linf": 0.13},
           "distilled": {"success": 1.0, "l0": 19, "l2": 2.2, "linf": 0.18}},
}
# CIFAR-10: Papernot et al. 2016, table/figure 5 and section V (no FGSM or CW figure of
# theirs for it: those cells show "-").
PAPER_CIFAR10 = {
    "train_images": 50000,
    "baseline_accuracy": 0.8095,
    "max_accuracy_cost": 0.0137,
    "jsma_success": {"baseline": 0.8789, 1: 0.9278, 2: 0.8767, 5: 0.67, 10: 0.4756, 20: 0.1823,
                     30: 0.1323, 40: 0.0934, 50: 0.0623, 100: 0.0511},
    "fgsm_success": {},
    "cw": {"baseline": {}, "distilled": {}},
}
PAPER = PAPER_MNIST
DATASETS = {
    # name: (what the tables call it, the paper's numbers, the net, its loader, FGSM's eps)
    "mnist": ("MNIST", PAPER_MNIST, architectures.papernot_mnist, datasets.load_mnist, 0.3),
    # eps = 8/255: the L-inf budget usual on CIFAR-10 (Madry et al., 2018); MNIST's 0.3
    # would wipe out a 32x32 colour image
    "cifar10": ("CIFAR-10", PAPER_CIFAR10, architectures.papernot_cifar10,
                datasets.load_cifar10, 8 / 255),
}


@dataclass(frozen=True)
class Settings:
    """What a run measures, and on how much."""
    dataset: str = "mnist"           # a key of DATASETS
    temperatures: tuple = TEMPERATURES
    epochs: int = 3
    batch_size: int = None           # None: the net's default (the papers' 128)
    decay_every: int = None          # the learning rate times decay_factor every this many
    decay_factor: float = None       #   epochs; None: the net's default (halved every 10)
    train_limit: int = None          # None: the whole training split
    validate: bool = True            # each net's test accuracy after every epoch (progress)
    seed: int = 0
    jsma_samples: int = 100          # x 9 targets: the paper's 900 attacks
    fgsm_images: int = None          # None: the whole test set
    eps: float = 0.3
    gradient_images: int = 1000      # amplitude histograms and the masking diagnostic
    cw_images: int = 20
    cw_iterations: int = 1000
    cw_binary_steps: int = 9
    cw_c: float = None               # the first c; None: each attack's reference default
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


def _key(name):
    """"baseline", or the temperature written as in the papers' tables ("20", "2.5")."""
    return name if name == "baseline" else f"{name:g}"


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

    net = DATASETS[settings.dataset][2]
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
            folder / f"teacher_T{_key(T)}.npz", key, trained, float(T), settings.seed)
        models[T] = runner.model(folder / f"student_T{_key(T)}.npz",
                                 lambda teacher, _: {**key, "teacher": teacher.checksum()},
                                 distilled, teacher, float(T))
        teachers.append(teacher)
    return models, teachers


def evaluate(model, name, settings, test, rng_seed, progress=True):
    """Every measure of one deployed net (T = 1). Returns a JSON-ready dict."""
    x_test, y_test = test
    rng = np.random.default_rng(rng_seed)
    row = {"accuracy": metrics.accuracy(model, x_test, y_test),
           "training_temperature": model.metadata.get("training_temperature", 1.0)}
    examples = {}
    g = rng.choice(len(x_test), min(settings.gradient_images, len(x_test)), replace=False)
    amplitudes = metrics.adversarial_gradient_amplitude(model, x_test[g])
    row["gradient_amplitude_histogram"] = metrics.amplitude_histogram(amplitudes).tolist()
    row["gradient_amplitude_median"] = float(np.median(amplitudes))
    row["gradient_masking"] = metrics.gradient_masking(model, x_test[g], y_test[g])
    if "jsma" in settings.attacks:
        pick = rng.choice(len(x_test), settings.jsma_samples, replace=False)
        say(progress, f"{name}: JSMA on {len(pick)} samples x 9 targets")
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


CW_ATTACKS = {"l2": attacks.cw_l2, "linf": attacks.cw_linf, "l0": attacks.cw_l0}   # quickest first
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
    paper = DATASETS[settings.dataset][1]
    out_dir = check_output_dir(out_dir, "out_dir")
    temperatures = len(settings.temperatures)
    nets = 1 + 2 * temperatures - (1 in settings.temperatures)     # teacher_T1 is the baseline
    progress = RunProgress(progress, nets + 1 + temperatures + 2 * len(cw_norms(settings.attacks)))
    runner = Runner(progress, client, heal)
    (x_train, y_train), (x_test, y_test) = load_data(data_path, settings.train_limit, download,
                                                     DATASETS[settings.dataset][3])
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

    def saved_at(name, what):
        return folder / f"{'baseline' if name == 'baseline' else f'T{_key(name)}'}_{what}.npz"

    def measure_cw(name, norm):
        say(progress, f"Carlini-Wagner {norm} on {label(name)}")
        # its batches: side by side on Dask workers
        measures[name, f"cw_{norm}"] = runner.split_measure(
            saved_at(name, f"cw_{norm}"), {**keys[name][1], "norm": norm}, cw_piece, cw_row,
            cw_batches(settings), (models[name], norm, settings, test, settings.seed + 2000),
            inside)

    for name, model in runner.as_ready(handles):       # on Dask: as each net comes back
        models[name], keys[name] = model, measure_keys(settings, model, test)
        # one seed for every model: the same samples are attacked on each
        measures[name, "attacks"] = runner.measure(
            saved_at(name, "attacks"), keys[name][0], evaluate, model, label(name), settings,
            test, settings.seed + 1000, inside)
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
        examples.setdefault(_key(name), {}).update(example)
        seconds += spent
        if what == "attacks":
            rows[_key(name)] = row
        else:
            cw.setdefault(_key(name), {})[what[len("cw_"):]] = row
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
    write_text(out_dir / "results.json", json.dumps(results, indent=1), "results")
    write_text(out_dir / "results.md", markdown_table(results), "results table")
    figures = plots.reproduction_figures(results, examples, out_dir)
    say(progress, f"wrote {out_dir / 'results.json'}, results.md and {len(figures)} figures "
                   f"in {results['seconds']:.0f} s")
    return results


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


def claims(results, bars=CLAIMS):
    """The papers' qualitative claims checked on one run's results (``bars``: see CLAIMS):
    a list of {"claim", "held", "measured"}. A claim whose measure the run lacks (an attack
    not run, no T >= 20 or no T = 100) is left out."""
    rows, cw, found = results["models"], results.get("cw", {}), []
    base = rows["baseline"]
    temperatures = [name for name in rows if name != "baseline"]
    hot = rows.get("100")

    def check(claim, held, measured):
        found.append({"claim": claim, "held": bool(held), "measured": measured})

    def rate(row, attack):
        return (row.get(attack) or {}).get("success")

    check(f"the undistilled net's accuracy is at least {percent(bars['baseline_accuracy'], 0)}",
          base["accuracy"] >= bars["baseline_accuracy"], percent(base["accuracy"]))
    if temperatures:
        cost = {T: base["accuracy"] - rows[T]["accuracy"] for T in temperatures}
        worst = max(cost, key=cost.get)
        check(f"distillation costs at most {100 * bars['accuracy_cost']:g} points of accuracy "
              f"at every T", cost[worst] <= bars["accuracy_cost"],
              f"at most {100 * cost[worst]:.2f} points (T = {worst})")
    share = bars["attack_share"]
    above = [T for T in temperatures if float(T) >= 20 and rate(rows[T], "jsma") is not None]
    if rate(base, "jsma") is not None and above:
        worst = max(above, key=lambda T: rate(rows[T], "jsma"))
        check(f"JSMA's success rate at every T >= 20 is at most {percent(share, 0)} of the "
              f"undistilled net's", rate(rows[worst], "jsma") <= share * rate(base, "jsma"),
              f"at most {percent(rate(rows[worst], 'jsma'))} (T = {worst}) vs "
              f"{percent(rate(base, 'jsma'))}")
    if hot is not None and rate(base, "fgsm") is not None and rate(hot, "fgsm") is not None:
        check(f"FGSM's success rate at T = 100 is at most {percent(share, 0)} of the "
              f"undistilled net's", rate(hot, "fgsm") <= share * rate(base, "fgsm"),
              f"{percent(rate(hot, 'fgsm'))} vs {percent(rate(base, 'fgsm'))}")
    if hot is not None:
        fall = base["gradient_amplitude_median"] / max(hot["gradient_amplitude_median"], 1e-300)
        check(f"the median adversarial gradient falls at least {bars['gradient_fall']:.0e} "
              f"times from the undistilled net to T = 100", fall >= bars["gradient_fall"],
              f"{base['gradient_amplitude_median']:.1e} to "
              f"{hot['gradient_amplitude_median']:.1e}")
    l2 = {name: (cw.get(name) or {}).get("l2") for name in ("baseline", "100")}
    if all(l2.values()):
        check(f"Carlini-Wagner L2 breaks at least {percent(bars['cw_success'], 0)} of its "
              f"images on the undistilled net and at T = 100",
              min(r["success"] for r in l2.values()) >= bars["cw_success"],
              f"{percent(l2['baseline']['success'], 0)} and {percent(l2['100']['success'], 0)}")
    return found


def claims_over_seeds(per_seed):
    """Each claim of the seeds' runs ({seed: results}): on how many seeds it held, and what
    each measured."""
    merged = {}
    for seed, results in per_seed.items():
        for c in results.get("claims", []):
            entry = merged.setdefault(c["claim"], {"claim": c["claim"], "held_on": 0,
                                                   "seeds": 0, "measured": {}})
            entry["held_on"] += c["held"]
            entry["seeds"] += 1
            entry["measured"][seed] = c["measured"]
    return list(merged.values())


def claims_table(checked):
    """results.md's lines for ``claims``' list."""
    if not checked:
        return []
    return ["The papers' claims on this run:", "", "| claim | held | measured |", "|---|---|---|",
            *(f"| {c['claim']} | {'yes' if c['held'] else '**no**'} | {c['measured']} |"
              for c in checked), ""]


def spread(values):
    """The numbers of several seeds' results (dicts of the same shape) as {"mean", "min",
    "max", "values"} at every numeric leaf; lists (histograms) are left to per_seed."""
    first = values[0]
    if isinstance(first, dict):
        return {key: spread([v.get(key) for v in values]) for key in first
                if all(isinstance(v, dict) and key in v for v in values)}
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numbers or len(numbers) != len(values):
        return None
    return {"mean": float(np.mean(numbers)), "min": float(min(numbers)),
            "max": float(max(numbers)), "values": numbers}


def _ranged(cell, show):
    """"mean [min, max]" of a spread cell, each number through ``show``; "-" for none."""
    if not cell:
        return "-"
    return f"{show(cell['mean'])} [{show(cell['min'])}, {show(cell['max'])}]"


def spread_table(results):
    """results.md of a run over several seeds: mean [min, max] per cell."""
    s, rows, cw = results["settings"], results["spread"], results["cw_spread"]
    pct, sci = (lambda v: percent(v, 1)), (lambda v: f"{v:.1e}")   # noqa: E731
    minutes = lambda v: f"{v:.1f}"                                  # noqa: E731
    wall = spread([r["seconds"] / 60 for r in results["per_seed"].values()])
    lines = [f"# Defensive distillation on {DATASETS[s['dataset']][0]}: mean [min, max] over "
             f"{len(results['seeds'])} seeds {results['seeds']}", "",
             f"Training split {s['train_images']:,} images, {s['epochs']} epochs per net; each "
             f"seed's own table is in seed<S>/results.md. Wall time per seed: "
             f"{_ranged(wall, minutes)} min.", "",
             "| model | accuracy | JSMA success | FGSM success | median adv. gradient | "
             "CW L2 success |", "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        label = "no distillation" if name == "baseline" else f"distilled, T = {name}"
        lines.append(f"| {label} | {_ranged(row.get('accuracy'), pct)} | "
                     f"{_ranged((row.get('jsma') or {}).get('success'), pct)} | "
                     f"{_ranged((row.get('fgsm') or {}).get('success'), pct)} | "
                     f"{_ranged(row.get('gradient_amplitude_median'), sci)} | "
                     f"{_ranged(((cw.get(name) or {}).get('l2') or {}).get('success'), pct)} |")
    lines.append("")
    if results.get("claims"):
        lines += ["The papers' claims, seed by seed:", "", "| claim | held on | measured |",
                  "|---|---|---|"]
        lines += [f"| {c['claim']} | {c['held_on']} of {c['seeds']} seeds | "
                  f"{'; '.join(f'seed {k}: {m}' for k, m in c['measured'].items())} |"
                  for c in results["claims"]]
        lines.append("")
    lines += [f"Environment: {kernels.environment_summary(results['environment'])}.", ""]
    return "\n".join(lines)


def _num(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(results):
    """The measured numbers beside the papers'."""
    s, paper, rows = results["settings"], results["paper"], results["models"]
    dataset = DATASETS[s.get("dataset", "mnist")][0]
    lines = [
        f"# Defensive distillation on {dataset}: measured vs published",
        "",
        f"Training split: **{s['train_images']:,} images** (the papers used "
        f"{paper['train_images']:,}); {s['epochs']} epochs per net (the paper: 50); "
        f"test set {s['test_images']:,} images. Every net is deployed at T = 1.",
        f"JSMA: {s['jsma_samples']} test samples x 9 targets, theta = +1, gamma = 14.5% of "
        f"the {s.get('input_features', 784):,} input features (search domain: every feature "
        f"below 1), saliency of the softmax. FGSM: eps = {s['eps']:.4g}, "
        f"{'all' if s['fgsm_images'] is None else s['fgsm_images']} test images. "
        f"Gradients: {s['gradient_images']} test images.",
        "",
        "| model | accuracy | JSMA success (paper) | JSMA mean L0 | FGSM success (paper) | "
        "FGSM unperturbed | FGSM with logits / T | median adv. gradient | zero FGSM gradients |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        jsma, fgsm = row.get("jsma", {}), row.get("fgsm", {})
        label = "no distillation" if name == "baseline" else f"distilled, T = {name}"
        lines.append(
            f"| {label} | {percent(row['accuracy'])} | {percent(jsma.get('success'))} "
            f"({percent(paper['jsma_success'].get(name))}) | {_num(jsma.get('mean_l0'), 1)} | "
            f"{percent(fgsm.get('success'))} ({percent(paper['fgsm_success'].get(name))}) | "
            f"{percent(fgsm.get('unperturbed'))} | {percent(fgsm.get('success_logits_divided_by_T'))} | "
            f"{row['gradient_amplitude_median']:.2e} | "
            f"{percent(row['gradient_masking']['fgsm']['all_zero_images'])} |")
    lines += ["", f"Paper: baseline accuracy {percent(paper['baseline_accuracy'])}; distillation "
              f"costs at most {100 * paper['max_accuracy_cost']:.2f} points.", ""]
    lines += claims_table(results.get("claims", []))
    if results["cw"]:
        lines += [f"Carlini-Wagner, targeted, {s['cw_images']} images, {s['cw_iterations']} "
                  f"iterations per round (paper: 100% success everywhere):", "",
                  "| model | L2 success | mean L2 (paper) | L0 success | mean L0 (paper) | "
                  "Linf success | mean Linf (paper) |", "|---|---|---|---|---|---|---|"]
        for name, row in results["cw"].items():
            p = paper["cw"]["baseline" if name == "baseline" else "distilled"]
            label = "no distillation" if name == "baseline" else f"distilled, T = {name}"
            cells = []
            for norm, digits in (("l2", 2), ("l0", 1), ("linf", 3)):
                got = row.get(norm, {})                    # a norm not asked for: "-"
                cells += [percent(got.get("success")),
                          f"{_num(got.get('mean_distortion'), digits)} ({p.get(norm, '-')})"]
            lines.append(f"| {label} | {' | '.join(cells)} |")
    lines += ["", "Gradient masking at T = 1 (fraction of input-gradient components exactly 0 "
              "in float32; non-finite components are counted too):", "",
              "| model | FGSM loss gradient | JSMA dF/dX | CW logit margin | non-finite |",
              "|---|---|---|---|---|"]
    for name, row in rows.items():
        m = row["gradient_masking"]
        nonfinite = max(v["nonfinite_fraction"] for v in m.values())
        label = "no distillation" if name == "baseline" else f"T = {name}"
        lines.append(f"| {label} | {percent(m['fgsm']['zero_fraction'])} | "
                     f"{percent(m['jsma']['zero_fraction'])} | {percent(m['cw']['zero_fraction'])} | "
                     f"{percent(nonfinite)} |")
    lines += ["", f"Wall time of this invocation: {results['seconds'] / 60:.1f} min. Summed over "
              f"the invocations that did the work (a run resumes from its saved models and "
              f"measures): measuring {results['measure_seconds'] / 60:.1f} min, training "
              f"{results['train_seconds'] / 60:.1f} min ({results['nets_timed']} nets timed; "
              f"nets saved before the training time was recorded are not).", ""]
    if "environment" in results:
        lines += [f"Environment: {kernels.environment_summary(results['environment'])}. The "
                  f"same seed gives the same bits on any thread count and number of Dask "
                  f"workers; another CPU kind, BLAS or convolution algorithm may differ in "
                  f"the last bits (README: when two runs give the same bits).", ""]
    return "\n".join(lines)


def settings_from(quick=False, dataset="mnist", **overrides):
    """The full or quick Settings for ``dataset`` (its FGSM eps), with ``overrides``."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {tuple(DATASETS)}, got {dataset!r}")
    quick_settings = QUICK_CIFAR10 if dataset == "cifar10" else QUICK
    base = replace(quick_settings if quick else Settings(), dataset=dataset,
                   eps=DATASETS[dataset][4])
    if overrides.get("seeds") is not None:
        check_positive(overrides["seeds"], "seeds", integer=True)
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
