"""A PyTorch model brought in with npdistill.interop, attacked here and by torchattacks.

    python -m bench.interop_torchattacks [--images 100] [--jsma-images 20] [--cw-images 20]
                                         [--cw-steps 100] [--apgd-images 100]
                                         [--apgd-steps 100] [--square-queries 1000]
                                         [--eps 0.1] [--eps-l2 2.0]
                                         [--model m.npz] [--json]

The cached 3-epoch MNIST net is exported with ``interop.to_torch`` (the PyTorch model a
user would have) and imported back with ``interop.from_torch`` (what npdistill attacks);
both see the same first test images. Same attack settings on both sides:

- FGSM eps = 0.3, untargeted: the fraction of identical adversarial pixels and success;
- JSMA theta = 1, gamma = 0.1, target (y + 1) % 10 (torchattacks' defaults), on the
  softmax, searching pixels below 0.99 as torchattacks does: success and mean L0;
- CW L2 at a fixed c = 1 (torchattacks has no binary search), kappa = 0, lr 0.01,
  ``--cw-steps`` Adam steps, untargeted: success and mean L2 (ours: one binary-search
  step at c = 1 without abort-early, the same problem);
- APGD on the cross-entropy and on the DLR loss, and Square (p_init 0.3, ``--square-queries``),
  ``--eps`` (0.1), untargeted: success and mean L-inf; ours also on ``interop.TorchModel(net)``,
  the live module, which must give the converted net's examples;
- Square in L2 (p_init 0.1, the paper's, ``--square-queries``) at ``--eps-l2`` (2.0):
  success and mean L2, ours also on the live module.

This compares answers, not speed (torch is in this process; see jsma_speed.py and
cw_speed.py for timings, each contender in its own process).
"""

import numpy as np

from bench import common

import npdistill as nd


def summary(x, x_adv, success, norm):
    d = (x_adv - x).reshape(len(x), -1)
    size = {"l0": lambda v: (v != 0).sum(axis=1), "l2": lambda v: np.sqrt((v ** 2).sum(axis=1)),
            "linf": lambda v: np.abs(v).max(axis=1)}[norm](d)
    return {"success": float(success.mean()),
            f"mean_{norm}": float(size[success].mean()) if success.any() else None}


def _peer_row(torch, net, x, y, ours, theirs, norm, on_live):
    with torch.no_grad():
        their_success = net(torch.from_numpy(theirs)).argmax(1).numpy() != y
    return {"npdistill": summary(x, ours.x_adv, ours.success, norm),
            "torchattacks": summary(x, theirs, their_success, norm),
            "torch_model": {"success": float(on_live.success.mean()),
                            "max_difference": float(np.abs(on_live.x_adv - ours.x_adv).max())}}


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--jsma-images", type=int, default=20)
    parser.add_argument("--cw-images", type=int, default=20)
    parser.add_argument("--cw-steps", type=int, default=100)
    parser.add_argument("--apgd-images", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.1, help="APGD's and Square's budget")
    parser.add_argument("--eps-l2", type=float, default=2.0, help="Square L2's budget")
    parser.add_argument("--apgd-steps", type=int, default=100)
    parser.add_argument("--square-queries", type=int, default=1000)
    parser.add_argument("--model", help="a saved model (default: the cached 3-epoch net)")
    args = parser.parse_args()
    torch = common.import_torch()
    try:
        import torchattacks
    except ImportError:
        raise SystemExit("needs torch and torchattacks: pip install torch torchattacks")

    model = common.trained_mnist(path=args.model)
    net = nd.interop.to_torch(model.astype(np.float32))               # the user's model
    ours = nd.interop.from_torch(net)                                  # what npdistill attacks
    _, (x_test, y_test) = common.load_mnist()
    x, y = x_test[:args.images], y_test[:args.images]
    # 1e-4 for logits of order 10; a distilled net's are T times larger
    err = common.check_same_logits(ours, net, torch, x,
                                   tol=1e-4 * max(1.0, float(np.abs(ours.logits(x)).max()) / 10))
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    rows = {"max_logit_difference": err}

    r = nd.attacks.fgsm(ours, x, y, eps=0.3)
    theirs = torchattacks.FGSM(net, eps=0.3)(tx, ty).numpy()
    with torch.no_grad():
        their_success = net(torch.from_numpy(theirs)).argmax(1).numpy() != y
    rows["fgsm"] = {"npdistill": summary(x, r.x_adv, r.success, "linf"),
                    "torchattacks": summary(x, theirs, their_success, "linf"),
                    "identical_pixels": float(np.mean(r.x_adv == theirs))}

    m = args.jsma_images
    target = (y[:m] + 1) % 10
    r = nd.attacks.jsma(ours, x[:m], target=target, theta=1.0, gamma=0.1,
                        search_domain=x[:m] < 0.99)
    softmax_net = common.to_torch(model, torch, softmax=True)
    theirs = torchattacks.JSMA(softmax_net, theta=1.0, gamma=0.1)(tx[:m], ty[:m]).numpy()
    with torch.no_grad():
        their_success = net(torch.from_numpy(theirs)).argmax(1).numpy() == target
    rows["jsma"] = {"npdistill": summary(x[:m], r.x_adv, r.success, "l0"),
                    "torchattacks": summary(x[:m], theirs, their_success, "l0")}

    m = args.cw_images
    r = nd.attacks.cw_l2(ours, x[:m], y[:m], c=1.0, binary_search_steps=1,
                         max_iterations=args.cw_steps, lr=0.01, abort_early=False)
    theirs = torchattacks.CW(net, c=1, kappa=0, steps=args.cw_steps, lr=0.01)(tx[:m], ty[:m])
    theirs = theirs.numpy()
    with torch.no_grad():
        their_success = net(torch.from_numpy(theirs)).argmax(1).numpy() != y[:m]
    rows["cw_l2"] = {"npdistill": summary(x[:m], r.x_adv, r.success, "l2"),
                     "torchattacks": summary(x[:m], theirs, their_success, "l2")}

    # Auto-PGD (Croce & Hein, 2020) on the cross-entropy and the DLR loss, and the Square
    # attack, at --eps (0.1: at MNIST's 0.3 both libraries break every image of an
    # undistilled net): success rates (their random draws differ from ours, so the examples
    # do not). Ours also on the live module (interop.TorchModel): in float32 torch and our
    # kernels round the gradients differently, and a sign step on a component near 0 can
    # go the other way, so after 100 steps a pixel may sit at the other edge of the ball
    # (the float64 tests ask for equality); the successes are compared.
    m, live = args.apgd_images, nd.interop.TorchModel(net)
    for loss in ("ce", "dlr"):
        r = nd.attacks.apgd(ours, x[:m], y[:m], eps=args.eps, loss=loss, steps=args.apgd_steps)
        r_live = nd.attacks.apgd(live, x[:m], y[:m], eps=args.eps, loss=loss, steps=args.apgd_steps)
        theirs = torchattacks.APGD(net, norm="Linf", eps=args.eps, steps=args.apgd_steps,
                                   loss=loss, seed=0)(tx[:m], ty[:m]).detach().numpy()
        rows[f"apgd_{loss}"] = _peer_row(torch, net, x[:m], y[:m], r, theirs, "linf", r_live)
    r = nd.attacks.square(ours, x[:m], y[:m], eps=args.eps, queries=args.square_queries,
                          p_init=0.3)
    r_live = nd.attacks.square(live, x[:m], y[:m], eps=args.eps, queries=args.square_queries,
                               p_init=0.3)
    theirs = torchattacks.Square(net, norm="Linf", eps=args.eps, n_queries=args.square_queries,
                                 p_init=0.3, seed=0)(tx[:m], ty[:m]).detach().numpy()
    rows["square"] = _peer_row(torch, net, x[:m], y[:m], r, theirs, "linf", r_live)
    square_l2 = dict(eps=args.eps_l2, norm=2, queries=args.square_queries, p_init=0.1)
    r = nd.attacks.square(ours, x[:m], y[:m], **square_l2)
    r_live = nd.attacks.square(live, x[:m], y[:m], **square_l2)
    theirs = torchattacks.Square(net, norm="L2", eps=args.eps_l2, n_queries=args.square_queries,
                                 p_init=0.1, seed=0)(tx[:m], ty[:m]).detach().numpy()
    rows["square_l2"] = _peer_row(torch, net, x[:m], y[:m], r, theirs, "l2", r_live)

    print(f"{common.machine()}; logits of the imported net equal torch's to {err:.1e}")
    for attack in ("fgsm", "jsma", "cw_l2", "apgd_ce", "apgd_dlr", "square", "square_l2"):
        row = rows[attack]
        cells = [f"{side}: {row[side]['success']:.0%} success, " + ", ".join(
            f"{k} {v:.3g}" for k, v in row[side].items() if k != "success" and v is not None)
                 for side in ("npdistill", "torchattacks")]
        extra = f"; identical pixels {row['identical_pixels']:.4%}" if "identical_pixels" in row \
            else ""
        if "torch_model" in row:
            extra += (f"; on TorchModel: {row['torch_model']['success']:.0%} success, examples "
                      f"within {row['torch_model']['max_difference']:.1e}")
        print(f"{attack:6s} {cells[0]}  |  {cells[1]}{extra}")
    common.report(args, rows)


if __name__ == "__main__":
    main()
