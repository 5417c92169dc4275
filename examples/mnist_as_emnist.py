"""Write MNIST's digits as an EMNIST balanced split, in NIST's own layout (gzip IDX files,
images stored transposed, the 47-class mapping file), so that the EMNIST study can be run
and timed where NIST's archive cannot be fetched. Digits keep their labels 0-9; classes
10-46 get no image (so I-FGSM aimed at class 46 sends nothing there): the numbers say
nothing about the course report, the times say what each part of the protocol costs.

    python examples/mnist_as_emnist.py --data ../shared/data/mnist --out /tmp/digits
    python -m npdistill reproduce --dataset emnist --quick --data /tmp/digits --out runs/emnist-digits
"""
import argparse
import gzip
from pathlib import Path

import numpy as np

import npdistill as nd

# the balanced split's classes, in its mapping file's order
BALANCED = [str(d) for d in range(10)] + [chr(c) for c in range(65, 91)] + list("abdefghnqrt")


def idx(array, code=0x08):
    """An IDX file's bytes: unsigned bytes (code 0x08) of ``array``'s shape."""
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                        for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(out, data=None):
    """The MNIST split found at ``data`` (load_mnist's search otherwise) written as
    out/emnist/emnist-balanced-*; returns that folder."""
    folder = Path(out) / "emnist"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "emnist-balanced-mapping.txt").write_text(
        "".join(f"{k} {ord(c)}\n" for k, c in enumerate(BALANCED)))
    for part, (x, y) in zip(("train", "test"), nd.datasets.load_mnist(data)):
        images = np.round(x[:, 0] * 255).astype(np.uint8).transpose(0, 2, 1)   # NIST's layout
        for kind, array in (("images-idx3", images), ("labels-idx1", y)):
            (folder / f"emnist-balanced-{part}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(idx(array), compresslevel=1))
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="MNIST's folder (default: load_mnist's search)")
    parser.add_argument("--out", required=True, help="folder to hold emnist/")
    args = parser.parse_args()
    print(f"wrote {write(args.out, args.data)}")


if __name__ == "__main__":
    main()
