# %% [markdown]
# # Why defensive distillation makes gradients vanish
#
# Papernot et al. (2016) trained a network at a softmax temperature T, distilled a second
# one from its soft labels at the same T, and deployed the second at T = 1. JSMA and FGSM
# then fail against it. Carlini & Wagner (2016) showed why that is not robustness: the
# deployed net's logits are about T times larger, its float32 softmax saturates, and the
# gradients those attacks follow are exactly zero. An attack that works on the logits
# still succeeds.
#
# This notebook shows each step on real MNIST, with numbers computed here. It trains three
# small nets (2 epochs each, about a minute on 2 cores): an undistilled baseline, a teacher
# at T = 100 and its distilled student.
#
# Run it with MNIST where npdistill finds it: `NPDISTILL_DATA=FOLDER` holding `mnist/`
# (or pass a folder to `load_mnist`; `download=True` fetches it).

# %%
# %matplotlib inline
import numpy as np

import npdistill as nd

(x_train, y_train), (x_test, y_test) = nd.datasets.load_mnist()
print(f"{len(x_train):,} training and {len(x_test):,} test images, "
      f"{nd.kernels.backend()} kernels")

# %% [markdown]
# ## Train a baseline, and a student distilled at T = 100
#
# `defensive_distillation` trains the teacher at T on the labels, then `distill`s a
# student from the teacher's soft labels softmax(z / T). Both are deployed at T = 1.

# %%
T = 100
options = dict(epochs=2, batch_size=64, decay_every=1, decay_factor=0.3, progress=False)
baseline, _ = nd.train(nd.architectures.papernot_mnist(seed=0), (x_train, y_train), **options)
teacher, student = nd.defensive_distillation(nd.architectures.papernot_mnist,
                                             (x_train, y_train), T, **options)
for name, net in (("baseline", baseline), (f"student, T = {T}", student)):
    print(f"{name:>18}: test accuracy {nd.metrics.accuracy(net, x_test, y_test):.2%}")

# %% [markdown]
# Distillation costs little accuracy. The defense's effect is on the gradients. Every
# measurement below uses the first 200 test images.

# %%
x, y = x_test[:200], y_test[:200]
models = {"baseline": baseline, str(T): student}

# %% [markdown]
# ## 1. The logits grow with T, and softmax(z) saturates
#
# Trained at T, the student learns logits z such that softmax(z / T) fits the soft
# labels: z is about T times larger than a baseline's. Deployed at T = 1, the gap between
# the two largest logits is hundreds, and exp(-gap) is below what float32 can hold next to
# 1: the largest softmax output is **exactly** 1.0.

# %%
scale = nd.teaching.logit_scale(models, x)
for name, row in scale.items():
    print(f"{name:>8}: median logit gap {row['median_logit_gap']:8.1f}, "
          f"softmax exactly 1.0 on {row['saturated_share']:.0%} of the images")
nd.plots.logit_scale(scale)

# %% [markdown]
# ## 2. float32 versus float64: the gradients are exact zeros
#
# The gradient FGSM follows is d CE / dx = J(x)ᵀ (softmax(z) − onehot(y)); JSMA's is
# dF/dx. With a saturated softmax both are products of zeros. The logits' own gradient
# (what a margin attack such as CW uses) is untouched. Computed in float64 the softmax
# gradient is there, but far below float32's smallest number.

# %%
zeros = nd.teaching.zero_gradients(models, x, y)
for name, row in zeros.items():
    print(f"{name:>8}: exactly 0 in float32 -- FGSM {row['fgsm_zero_fraction']:.1%}, "
          f"JSMA {row['jsma_zero_fraction']:.1%}, CW {row['cw_zero_fraction']:.1%}; "
          f"median amplitude in float64 {row['median_amplitude_float64']:.2e}")
nd.plots.zero_gradients(zeros)

# %% [markdown]
# Seen image by image: the loss gradient of the baseline, then of the student.

# %%
nd.plots.gradients(baseline, x, y, n=6)

# %%
nd.plots.gradients(student, x, y, n=6)

# %% [markdown]
# ## 3. FGSM takes a step along sign(0) = 0
#
# FGSM moves every pixel by ε in the direction of the gradient's sign. Where the whole
# gradient is zero, the adversarial image *is* the clean image.

# %%
example = nd.teaching.fgsm_sign_zero(models, x, y, eps=0.3)
for name, row in example["rows"].items():
    print(f"{name:>8}: {row['nonzero']} non-zero gradient components, "
          f"{row['moved']} pixels moved, class {row['clean_class']} -> "
          f"{row['adversarial_class']}")
nd.plots.fgsm_sign_zero(example)

# %%
fgsm = {name: nd.attacks.fgsm(net, x, y, eps=0.3) for name, net in models.items()}
for name, result in fgsm.items():
    print(f"{name:>8}: FGSM eps = 0.3 succeeds on {result.success_rate:.0%}, "
          f"leaves {np.mean(result.l0 == 0):.0%} of the images unchanged")

# %% [markdown]
# ## 4. The T trick: divide the logits by T again
#
# The attacker knows (or guesses) T. Taking the loss of softmax(z / T) instead of
# softmax(z) undoes the saturation: the gradient is back, and FGSM works again.

# %%
nd.plots.gradients(student, x, y, T=T, n=6)

# %%
trick = nd.attacks.fgsm(student, x, y, eps=0.3, T=T)
print(f"FGSM on the student at T = 1: {fgsm[str(T)].success_rate:.0%}; "
      f"with the logits divided by {T}: {trick.success_rate:.0%}")
nd.plots.examples(student, x, trick, n=8)

# %% [markdown]
# ## 5. Carlini-Wagner on the logits
#
# CW L2 minimizes ‖δ‖² + c · f(x + δ), with f a margin between the logits: it never
# goes through the softmax, so the scale of the logits changes nothing but the constant c
# its binary search finds. It finds small targeted perturbations for the distilled
# student as for the baseline.

# %%
target = nd.attacks.random_targets(y[:10], 10, seed=0)
cw = {name: nd.attacks.cw_l2(net, x[:10], target=target, max_iterations=300,
                             binary_search_steps=5, progress=False)
      for name, net in models.items()}
for name, result in cw.items():
    print(f"{name:>8}: CW L2 reaches its target on {result.success_rate:.0%}, "
          f"mean L2 {result.l2[result.success].mean():.2f}")
nd.plots.examples(student, x[:10], cw[str(T)], n=8)

# %% [markdown]
# ## 6. Attacks the masking cannot fool: APGD on the DLR loss, and Square
#
# The T trick needs T. Auto-PGD (Croce & Hein, 2020) with the *difference of logits
# ratio* loss, −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3), does not: scaling the logits leaves
# the ratio unchanged, so its gradient survives the saturation. The same attack on the
# cross-entropy is masked like FGSM. The Square attack (Andriushchenko et al., 2020)
# uses no gradient at all: a random search on the logit margin, which the saturated
# softmax never touches.

# %%
for name, net in models.items():
    ce = nd.attacks.apgd(net, x[:100], y[:100], eps=0.3, steps=50, loss="ce")
    dlr = nd.attacks.apgd(net, x[:100], y[:100], eps=0.3, steps=50, loss="dlr")
    searched = nd.attacks.square(net, x[:100], y[:100], eps=0.3, queries=1000, p_init=0.3)
    print(f"{name:>8}: eps = 0.3 -- APGD on the cross-entropy {ce.success_rate:.0%}, "
          f"APGD on the DLR loss {dlr.success_rate:.0%}, Square {searched.success_rate:.0%} "
          f"(median {np.median(searched.iterations):.0f} queries)")
nd.plots.examples(student, x[:100], dlr, n=8)

# %% [markdown]
# ## What this shows
#
# - Distillation at T = 100 leaves accuracy about where it was and makes the float32
#   softmax of the deployed net saturate: its input gradients are exact zeros.
# - Attacks that follow those gradients (FGSM, JSMA) fail: this is *gradient masking*.
# - The same net falls to FGSM once the logits are divided by T, to CW on the logits,
#   and to APGD on the DLR loss and Square without knowing T: the decision boundary is
#   as close as before.
#
# An evaluation that reports robustness should use attacks the masking cannot fool
# (Carlini et al., 2019, "On Evaluating Adversarial Robustness"). `python -m npdistill
# reproduce --quick` runs the papers' whole table; docs/teaching.md has the long version.
