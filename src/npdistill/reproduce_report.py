"""The reproductions' reports: the papers' claims checked on a run's own numbers, the
measured tables beside the papers' (results.md), and the spread over seeds."""
import numpy as np

from . import kernels
from .benchmarks import benchmark
from .runs import percent

# The papers' qualitative claims as ``claims`` checks them on a run (the bars --quick meets on
# seeds 0-4, docs/RESULTS.md): the undistilled net's accuracy; the most distillation may
# cost at any T; JSMA at T >= 20 and FGSM at T = 100 succeed at most this share of the
# baseline's rate; the median adversarial gradient falls this many times by T = 100; CW L2
# breaks at least this share of its images on the baseline and at T = 100.
CLAIMS = {"baseline_accuracy": 0.97, "accuracy_cost": 0.02, "attack_share": 0.2,
          "gradient_fall": 1e10, "cw_success": 0.9}


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
    lines = [f"# Defensive distillation on {benchmark(s['dataset']).title}: mean [min, max] over "
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
    dataset = benchmark(s.get("dataset", "mnist")).title
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
