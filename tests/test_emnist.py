"""EMNIST on synthetic files written as NIST writes them (gzip IDX, images transposed, a
mapping file, all inside gzip.zip): images come back upright, labels and characters from
the mapping, only the asked split is extracted, bad files are refused by name."""
import gzip
import hashlib
import io
import zipfile

import numpy as np
import pytest

import npdistill as nd
from npdistill import datasets
from npdistill.__main__ import main
from tests.test_datasets import idx_bytes, server  # noqa: F401  (server: a fixture)

BALANCED = [str(d) for d in range(10)] + [chr(c) for c in range(65, 91)] + \
    list("abdefghnqrt")                                        # the 47 classes, in order


def glyph():
    """An asymmetric mark: a bar down the left edge and one along the top (a 'Γ')."""
    image = np.zeros((28, 28), np.uint8)
    image[2:26, 3] = 255
    image[2, 3:20] = 200
    return image


def split_files(split="balanced", n_train=6, n_test=4, seed=0):
    """{file name: bytes} of one split as NIST publishes it."""
    rng = np.random.default_rng(seed)
    if split == "letters":      # classes 1..26, both cases of each letter
        mapping = "".join(f"{k} {64 + k} {96 + k}\n" for k in range(1, 27))
        low, high = 1, 26
    else:
        mapping = "".join(f"{k} {ord(c)}\n" for k, c in enumerate(BALANCED))
        low, high = 0, 46
    files = {f"emnist-{split}-mapping.txt": mapping.encode()}
    for part, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        images[0] = glyph()
        stored = images.transpose(0, 2, 1)                      # NIST's column-major layout
        files[f"emnist-{split}-{part}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(stored))
        labels = rng.integers(low, high + 1, n)
        labels[0] = high
        files[f"emnist-{split}-{part}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(labels))
    return files


def write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def test_images_come_back_upright_with_their_labels_and_characters(tmp_path):
    write(tmp_path / "emnist", split_files())
    (x, y), (x_test, y_test) = datasets.load_emnist(tmp_path)         # a data root
    assert x.shape == (6, 1, 28, 28) and x_test.shape == (4, 1, 28, 28)
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x[0, 0] * 255, glyph())             # upright
    assert x[0, 0, 10, 3] == 1 and x[0, 0, 3, 10] < 1                 # the bar is vertical
    classes = datasets.emnist_classes(tmp_path / "emnist")            # the folder itself
    assert classes == BALANCED and classes[y[0]] == "t"
    assert 0 <= y.min() and y.max() == 46


def test_letters_labels_start_at_zero_and_hold_both_cases(tmp_path):
    write(tmp_path / "emnist", split_files("letters"))
    (_, y), (_, y_test) = datasets.load_emnist(tmp_path, split="letters")
    assert y[0] == 25 and y_test.min() >= 0 and y_test.max() <= 25
    classes = datasets.emnist_classes(tmp_path, split="letters")
    assert classes[0] == "Aa" and classes[25] == "Zz" and len(classes) == 26


@pytest.mark.parametrize("damage, match", [
    (lambda f: f.update({"emnist-balanced-test-labels-idx1-ubyte.gz": gzip.compress(
        idx_bytes(np.array([0, 1, 47, 2])))}), r"labels must lie in 0\.\.46, got values in 0\.\.47"),
    (lambda f: f.update({"emnist-balanced-mapping.txt": b"0 48\nten 49\n"}),
     r"mapping.txt, line 2: expected 'class code'"),
    (lambda f: f.update({"emnist-balanced-mapping.txt": b"0 48\n2 50\n"}),
     "the classes must be consecutive"),
    (lambda f: f.update({"emnist-balanced-train-images-idx3-ubyte.gz": gzip.compress(
        idx_bytes(np.zeros((5, 28, 28))))}), "holds 5 images but .* holds 6 labels"),
    (lambda f: f.pop("emnist-balanced-test-images-idx3-ubyte.gz"),
     "emnist-balanced-test-images-idx3-ubyte.gz not found"),
])
def test_damaged_or_missing_files_are_refused_by_name(tmp_path, damage, match):
    files = split_files()
    damage(files)
    write(tmp_path / "emnist", files)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        datasets.load_emnist(tmp_path)


def test_an_unknown_split_is_refused():
    with pytest.raises(ValueError, match=r"split must be one of \['balanced'"):
        datasets.load_emnist(split="balance")


def test_download_streams_the_archive_and_extracts_only_the_split(tmp_path, server,  # noqa: F811
                                                                  monkeypatch):
    root, url = server
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for split in ("balanced", "digits"):
            for name, data in split_files(split).items():
                archive.writestr(f"gzip/{name}", data)
    (root / "gzip.zip").write_bytes(buffer.getvalue())
    monkeypatch.setitem(datasets.RESOURCES, "emnist", (
        "emnist", [url + "ranged/"], {"gzip.zip": hashlib.md5(buffer.getvalue()).hexdigest()}))
    monkeypatch.setenv("NPDISTILL_DATA", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match="download=True"):
        datasets.load_emnist()
    (x, _), _ = datasets.load_emnist(download=True)
    np.testing.assert_array_equal(x[0, 0] * 255, glyph())
    folder = tmp_path / "data" / "emnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["gzip.zip", *datasets.emnist_files("balanced")])          # the split, and the archive
    (x, _), _ = datasets.load_emnist(split="digits")                 # from the kept archive
    assert len(x) == 6 and (folder / "emnist-digits-mapping.txt").is_file()


def test_the_emnist_net_takes_pixels_and_has_47_classes():
    model = nd.architectures.emnist_net(seed=0)
    assert model.num_classes == 47 and type(model.layers[0]).__name__ == "Normalize"
    assert model.metadata["training_defaults"]["lr"] == 0.01
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    inner = nd.Sequential(model.layers[1:])
    np.testing.assert_allclose(model.logits(x), inner.logits((x - 0.1751) / 0.3332),
                               rtol=1e-5, atol=1e-5)
    assert nd.architectures.emnist_net(classes=26, normalize=None).num_classes == 26


def test_the_cli_trains_the_emnist_net_on_the_split(tmp_path, capsys):
    write(tmp_path / "emnist", split_files(n_train=40, n_test=10))
    assert main(["train", "--dataset", "emnist", "--data", str(tmp_path), "--epochs", "1",
                 "--quiet", "--out", str(tmp_path / "net.npz")]) == 0
    assert "emnist: 40 training and 10 test images" in capsys.readouterr().err
    model = nd.load_model(tmp_path / "net.npz")
    assert model.num_classes == 47 and model.metadata["name"] == "emnist_net"


def test_mnist_written_by_the_example_reads_back_as_the_same_digits(tmp_path):
    """examples/mnist_as_emnist.py (the EMNIST study's timing on MNIST's digits): NIST's
    layout, so load_emnist turns the images back upright."""
    import importlib.util
    from pathlib import Path

    from tests.test_datasets import write_mnist
    write_mnist(tmp_path / "mnist", n_train=5, n_test=3)
    path = Path(__file__).resolve().parents[1] / "examples" / "mnist_as_emnist.py"
    spec = importlib.util.spec_from_file_location("mnist_as_emnist", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.BALANCED == BALANCED
    example.write(tmp_path / "out", tmp_path / "mnist")
    (x, y), (x_test, y_test) = datasets.load_emnist(tmp_path / "out")
    (mx, my), (mx_test, my_test) = datasets.load_mnist(tmp_path / "mnist")
    np.testing.assert_array_equal(x, mx)
    np.testing.assert_array_equal(x_test, mx_test)
    np.testing.assert_array_equal(y, my)
    assert datasets.emnist_classes(tmp_path / "out") == BALANCED
