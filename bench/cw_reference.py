"""The authors' Carlini-Wagner L2 algorithm, line by line, in plain PyTorch.

github.com/carlini/nn_robust_attacks, l2_attack.py (CarliniL2.attack_batch),
re-expressed without TensorFlow so that it runs on the PyTorch twin of an
npdistill net; the peer that ``bench/cw_speed.py`` measures cw_l2 against.
What it keeps from the original, on purpose:

- every binary-search round restarts from modifier = 0 (the clean image) with
  Adam's state reset (``sess.run(self.init)``);
- Adam as TensorFlow's AdamOptimizer computes it (epsilon added to sqrt(v)
  before the bias correction is applied to the step size: the "epsilon hat" of
  Kingma & Ba, section 2), not torch.optim.Adam, whose epsilon differs early on;
- abort early for the whole batch: every max_iterations // 10 iterations the
  batch's summed loss is compared with the last check's, and the round ends
  for every image when it fell by less than 0.01%;
- the bookkeeping of a round (best L2 of a success, judged by argmax of the
  logits with kappa subtracted from the target's) and the search over c:
  x10 while no success was ever found, then bisection; with 10 or more rounds
  the last one repeats at the upper bound;
- the L2 distance is measured from tanh(arctanh(x0 * 0.999999)), as there.

Two things differ, neither changing the answer: images are (N, C, H, W) in a
box [lo, hi] (npdistill's layout; the original is NHWC in [-0.5, 0.5]), and an
image without a success comes back unchanged rather than all zeros.
"""
import math

import numpy as np

BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8            # TensorFlow's AdamOptimizer defaults


def carlini_l2(torch, model, x, labels, *, targeted=True, batch_size=1, kappa=0.0,
               initial_const=1e-3, binary_search_steps=9, max_iterations=10000,
               learning_rate=1e-2, abort_early=True, lo=0.0, hi=1.0, on_round=None):
    """Adversarial examples of ``model`` (a torch module returning logits) for the images
    x (N, C, H, W) float32 numpy. Returns (x_adv numpy, Adam steps per image).

    on_round(images_done, successes) is called after every round of every batch with the
    count of images whose attack has found an example so far (finished batches included).
    """
    x_adv, steps = x.copy(), np.zeros(len(x), np.int64)
    found_before = 0
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        x_adv[rows], steps[rows], found = _attack_batch(
            torch, model, x[rows], labels[rows], targeted=targeted, kappa=kappa,
            initial_const=initial_const, binary_search_steps=binary_search_steps,
            max_iterations=max_iterations, learning_rate=learning_rate,
            abort_early=abort_early, lo=lo, hi=hi,
            on_round=on_round and (lambda count, before=found_before: on_round(before + count)))
        found_before += found
    return x_adv, steps


def _attack_batch(torch, model, imgs, labs, *, targeted, kappa, initial_const,
                  binary_search_steps, max_iterations, learning_rate, abort_early, lo, hi,
                  on_round):
    batch_size = len(imgs)
    boxmul, boxplus = (hi - lo) / 2, (hi + lo) / 2
    repeat = binary_search_steps >= 10
    num_labels = int(model(torch.from_numpy(imgs[:1])).shape[1])
    timg = torch.from_numpy(np.arctanh((imgs - boxplus) / boxmul * 0.999999).astype(np.float32))
    tlab = torch.nn.functional.one_hot(torch.from_numpy(labs.astype(np.int64)),
                                       num_labels).float()
    clean = torch.tanh(timg) * boxmul + boxplus

    lower_bound = np.zeros(batch_size)
    const = np.ones(batch_size) * initial_const
    upper_bound = np.ones(batch_size) * 1e10
    o_bestl2 = [1e10] * batch_size
    o_bestattack = [img.copy() for img in imgs]
    steps = 0
    check_every = max(max_iterations // 10, 1)

    def compare(scores, y):
        if not isinstance(scores, (int, np.integer)):
            scores = scores.copy()
            scores[y] += -kappa if targeted else kappa
            scores = int(np.argmax(scores))
        return scores == y if targeted else scores != y

    for outer_step in range(binary_search_steps):
        modifier = torch.zeros_like(timg, requires_grad=True)       # sess.run(self.init)
        m, v = torch.zeros_like(timg), torch.zeros_like(timg)
        bestl2, bestscore = [1e10] * batch_size, [-1] * batch_size
        if repeat and outer_step == binary_search_steps - 1:
            const = upper_bound
        tconst = torch.from_numpy(np.asarray(const, np.float32))
        prev = np.inf
        for iteration in range(max_iterations):
            newimg = torch.tanh(modifier + timg) * boxmul + boxplus
            output = model(newimg)
            l2dist = ((newimg - clean) ** 2).sum(dim=(1, 2, 3))
            real = (tlab * output).sum(1)
            other = ((1 - tlab) * output - tlab * 10000).max(1).values
            loss1 = torch.clamp(other - real + kappa if targeted else real - other + kappa,
                                min=0.0)
            loss = (tconst * loss1).sum() + l2dist.sum()
            (grad,) = torch.autograd.grad(loss, modifier)
            with torch.no_grad():                                    # self.train: one Adam step
                t = iteration + 1
                m.mul_(BETA1).add_(grad, alpha=1 - BETA1)
                v.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
                lr_t = learning_rate * math.sqrt(1 - BETA2 ** t) / (1 - BETA1 ** t)
                modifier -= lr_t * m / (v.sqrt() + EPSILON)
            steps += 1
            l = float(loss.detach())
            if abort_early and iteration % check_every == 0:
                if l > prev * .9999:
                    break
                prev = l
            l2s, scores = l2dist.detach().numpy(), output.detach().numpy()
            nimg = newimg.detach().numpy()
            for e, (l2, sc, ii) in enumerate(zip(l2s, scores, nimg)):
                if l2 < bestl2[e] and compare(sc, labs[e]):
                    bestl2[e] = l2
                    bestscore[e] = int(np.argmax(sc))
                if l2 < o_bestl2[e] and compare(sc, labs[e]):
                    o_bestl2[e] = l2
                    o_bestattack[e] = ii
        for e in range(batch_size):
            if compare(bestscore[e], labs[e]) and bestscore[e] != -1:
                upper_bound[e] = min(upper_bound[e], const[e])
                if upper_bound[e] < 1e9:
                    const[e] = (lower_bound[e] + upper_bound[e]) / 2
            else:
                lower_bound[e] = max(lower_bound[e], const[e])
                if upper_bound[e] < 1e9:
                    const[e] = (lower_bound[e] + upper_bound[e]) / 2
                else:
                    const[e] *= 10
        if on_round is not None:
            on_round(sum(best < 1e10 for best in o_bestl2))
    found = sum(best < 1e10 for best in o_bestl2)
    return np.stack(o_bestattack), steps, found
