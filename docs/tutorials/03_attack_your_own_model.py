# %% [markdown]
# # Attack your own PyTorch model
#
# npdistill's attacks, its exact Jacobian, `evaluate` and the masking checklist take any
# `torch.nn.Module`, not only the library's own nets: `interop.TorchModel` runs the module
# as it is (in eval mode) and asks torch's autograd for the input gradients, NumPy in and
# NumPy out. Nothing is converted, so a ResNet, batch norm, strided or grouped
# convolutions, or a model zoo's net all work.
#
# This notebook builds a small residual net with batch norm and a stride-2 convolution in
# PyTorch, trains it with PyTorch (about 15 s on 2 cores), and then attacks and evaluates
# it with npdistill. It needs PyTorch (`pip install "npdistill[torch]"`) and MNIST where
# npdistill finds it (`NPDISTILL_DATA=FOLDER` holding `mnist/`).

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display
from torch import nn

import npdistill as nd

torch.manual_seed(0)
torch.set_num_threads(2)
(x_train, y_train), (x_test, y_test) = nd.datasets.load_mnist()
print(f"torch {torch.__version__}; {len(x_train):,} training images")

# %% [markdown]
# ## A model npdistill could not convert
#
# A ResNet basic block (conv, batch norm, ReLU, conv, batch norm, plus its input), a
# stride-2 downsampling convolution, global average pooling. The net takes *normalized*
# images, (x − 0.1307) / 0.3081, as most published MNIST nets do. `interop.from_torch`
# converts only plain stacks of Conv2d / Linear / ReLU / MaxPool; this one it refuses.

# %%
class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


net = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), Block(8),
    nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
    Block(16), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

try:
    nd.interop.from_torch(net)
except (TypeError, ValueError) as error:
    print(f"from_torch: {error}")

# %% [markdown]
# ## Train it with PyTorch
#
# One pass of Adam over the training images, as a PyTorch user would write it.

# %%
mean, std = 0.1307, 0.3081
optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
images = torch.from_numpy((x_train - mean) / std)
labels = torch.from_numpy(y_train.astype(np.int64))
net.train()
for start in range(0, len(images), 32):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(net(images[start:start + 32]), labels[start:start + 32])
    loss.backward()
    optimizer.step()
net.eval()
print(f"last batch's loss {loss.item():.3f}")

# %% [markdown]
# ## Wrap it: `TorchModel`
#
# `preprocessing=(mean, std)` puts the normalization inside the model, so the attacks work
# in pixel space: budgets are in pixels and examples stay in the clip box [0, 1]. The
# module must be in eval mode (batch norm's running statistics, no dropout); a module in
# training mode is refused by name rather than attacked with batch statistics.

# %%
live = nd.interop.TorchModel(net, clip=(0, 1), preprocessing=(mean, std))
x, y = x_test[:40], y_test[:40]
print(live)
print(f"test accuracy {nd.metrics.accuracy(live, x_test[:1000], y_test[:1000]):.1%} "
      f"(first 1,000 test images)")

try:
    nd.interop.TorchModel(net.train())
except ValueError as error:
    print(f"refused: {error}")
net.eval();

# %% [markdown]
# ## The exact Jacobian
#
# `nd.jacobian` gives d softmax / dx (or, with `of="logits"`, d z / dx) for every class:
# one forward pass and the ten class seeds backpropagated together. It is the same matrix
# `torch.func.jacrev` computes, to float32 rounding.

# %%
J = nd.jacobian(live, x[:4], of="logits")                          # (4, 10, 1, 28, 28)
reference = torch.func.vmap(torch.func.jacrev(
    lambda image: net(((image - mean) / std)[None])[0]))(torch.from_numpy(x[:4]))
print(f"Jacobian {J.shape}; largest difference from torch.func.jacrev: "
      f"{np.abs(J - reference.detach().numpy()).max():.1e} (entries up to {np.abs(J).max():.1f})")

fig, axes = plt.subplots(1, 11, figsize=(13, 1.7))
axes[0].imshow(x[0, 0], cmap="gray")
axes[0].set_title(f"image ({y[0]})", fontsize=9)
bound = np.abs(J[0]).max()
for k, ax in enumerate(axes[1:]):
    ax.imshow(J[0, k, 0], cmap="RdBu_r", vmin=-bound, vmax=bound)
    ax.set_title(f"dz{k} / dx", fontsize=9)
for ax in axes:
    ax.set_axis_off()
fig.suptitle("The first test image and each logit's input gradient (red raises it)",
             fontsize=10, y=1.08)
plt.show()

# %% [markdown]
# ## Attacks
#
# Every attack takes the live module unchanged and returns the same `AttackResult`:
# success per image, the examples and their L0 / L2 / L∞ sizes. `nd.plots.examples` draws
# any of them: clean images with the model's class, the examples with theirs (red where
# the attack reached its goal) and the perturbations.

# %%
attacks = {
    "FGSM, ε = 0.1": nd.attacks.fgsm(live, x, y, eps=0.1),
    "PGD, ε = 0.1, 20 steps": nd.attacks.pgd(live, x, y, eps=0.1, steps=20, seed=0),
    "APGD-DLR, ε = 0.1, 20 steps": nd.attacks.apgd(live, x, y, eps=0.1, steps=20, seed=0),
    "Square L2, ε = 1, 300 queries": nd.attacks.square(live, x, y, eps=1.0, norm=2,
                                                       queries=300, seed=0),
    "CW L2, 100 steps": nd.attacks.cw_l2(live, x[:10], y[:10], c=1.0, max_iterations=100,
                                         binary_search_steps=3),
}
for name, r in attacks.items():
    print(f"{name:>29}: {r.success.mean():4.0%} of {len(r.success)} images broken, "
          f"mean L2 of the examples {r.l2[r.success].mean():.2f}")
nd.plots.examples(live, x[:10], attacks["CW L2, 100 steps"], n=6)

# %% [markdown]
# ## Robust accuracy as a paper reports it
#
# `nd.evaluate` runs a set of attacks at each ε and reports each attack's accuracy and the
# worst case over them (an image is robust only if no attack breaks it). The default set
# is FGSM, PGD and APGD on the cross-entropy, APGD on the DLR loss and Square, at the
# papers' budgets; here with fewer steps and queries so that it runs in seconds.

# %%
fast = ["fgsm", ("pgd", {"steps": 20}), ("apgd-ce", {"steps": 20}),
        ("apgd-dlr", {"steps": 20}), ("square", {"queries": 200})]
evaluation = nd.evaluate(live, x[:20], y[:20], attacks=fast,
                         eps=(0, 0.025, 0.05, 0.075, 0.1))
display(Markdown(evaluation.table()))
evaluation.plot()

# %% [markdown]
# ## Further
#
# - `nd.metrics.masking_report(live, x, y, eps=0.1)` reads such an evaluation with the
#   gradient-masking checks of Carlini et al. (2019); docs/teaching.md shows it flag a
#   distilled net and clear an undistilled one.
# - `distributed.map_attack(live, ...)` and `nd.evaluate(..., client=...)` run the attacks
#   on Dask workers: a `TorchModel` pickles without its autograd graph.
# - `nd.defenses.mutation_detection` mutates its Conv2d / Linear weights in place of a
#   Sequential's.
# - From the command line: `npdistill evaluate --arch NAME --state-dict net.pt` for a
#   state_dict of one of the library's architectures.
# - A `TorchModel` is slower than a library net (torch's per-call overhead) and cannot be
#   trained here: train with PyTorch, attack with npdistill.
