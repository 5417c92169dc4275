# %% [markdown]
# # Reproduce the paper: defensive distillation on MNIST
#
# Papernot et al. (2016) report that distillation at temperature T keeps accuracy within
# about a point and makes JSMA's success fall from ~90% to a few percent; Carlini &
# Wagner (2016) that their attacks on the logits still succeed. `python -m npdistill
# reproduce` measures all of it on one machine and checks each claim on the run's own
# numbers:
#
# ```bash
# python -m npdistill reproduce --quick --out runs/quick    # ~3 min on 2 cores, 5 nets
# python -m npdistill reproduce --out runs/full --epochs 20 # the papers' protocol, hours
# ```
#
# This notebook calls the same function, cut down so that it runs in about a minute: the
# quick run's nets (all 22,699 training images, 2 epochs) at one temperature, T = 100,
# with a few JSMA and CW attacks. Every setting of `Settings` is a field you can change;
# the numbers below come from this run.

# %%
# %matplotlib inline
import json
import tempfile
from pathlib import Path

from IPython.display import Image, Markdown, display

from npdistill.reproduce import reproduce, settings_from

out = Path(tempfile.mkdtemp(prefix="npdistill-reproduce-"))
settings = settings_from(quick=True, temperatures=(100,), jsma_samples=3, cw_images=3,
                         cw_iterations=200)
print(settings)

# %% [markdown]
# ## Run it
#
# Each net and each measure is a task, saved under `out` as it finishes: run the same call
# again and it reuses them (a run cut off resumes). `progress=True` prints a line per
# task with the run's rate and ETA.

# %%
results = reproduce(out, settings, progress=False)
print(f"{len(results['models'])} nets measured in {results['seconds']:.0f} s; "
      f"files: {sorted(p.name for p in out.iterdir())}")

# %% [markdown]
# ## The table, beside the papers' numbers
#
# `results.md` holds the measured table, the published one beside it, and the papers'
# claims checked on this run with stated bars (`results.json` has every number). A run
# this small can miss a bar by chance (3 JSMA samples, 3 CW images): the quick run's
# five-seed table in docs/RESULTS.md is where the claims are held to account.

# %%
display(Markdown((out / "results.md").read_text()))

# %%
for claim in results["claims"]:
    print(f"{'held' if claim['held'] else 'NOT held':>8}: {claim['claim']}")

# %% [markdown]
# ## The figures
#
# Success of JSMA and FGSM against T; accuracy against T; the adversarial-gradient
# amplitudes (the papers' figure 8); and examples of each attack on each net.

# %%
for name in ("success_vs_temperature", "accuracy_vs_temperature", "gradient_amplitudes",
             "adversarial_examples"):
    display(Image(filename=str(out / f"{name}.png")))

# %% [markdown]
# ## Scale it
#
# - **More of the protocol**: drop the overrides above (`settings_from(quick=True)` is
#   the quick run: T ∈ {20, 100}, 10 JSMA samples, 20 CW images of 1,000 steps), or
#   `settings_from()` for the papers' temperatures and budgets.
# - **More processes or machines**: `--workers N` runs the nets and measures as a Dask
#   task graph on a local cluster, `--scheduler tcp://HOST:8786` on a running one; the
#   results are the same bits as a serial run, a lost worker's tasks are rerun, and the
#   client saves everything, so workers need no shared folder.
# - **Spread over seeds**: `--seeds 5` trains every net with five seeds and reports each
#   cell as its mean and range (docs/RESULTS.md has the quick run's five-seed table).
#
# ```bash
# python -m npdistill reproduce --quick --out runs/quick --workers 2
# python -m npdistill reproduce --quick --out runs/quick5 --seeds 5
# ```

# %%
print(json.dumps(results["environment"], indent=1)[:600])
