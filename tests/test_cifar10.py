"""CIFAR-10 loading: the project's JPEG copy, the official batch format (as a
directory and as its .tar.gz), image-folder trees, the cache, the pooch
download verified by MD5, and untrusted files."""
import functools
import hashlib
import http.server
import io
import os
import pickle
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from fastconv import cifar10, datasets
from fastconv.datasets import CIFAR10_CLASSES, DatasetError, load_cifar10

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache directory; FASTCONV_DATA_DIR is not inherited."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.delenv("FASTCONV_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def shared_copy(tmp_path_factory):
    if not (SHARED / "cifar10-images.tar.gz").is_file():
        pytest.skip(f"the project's CIFAR-10 copy is not at {SHARED}")
    cache = tmp_path_factory.mktemp("cifar-cache")
    return cache, load_cifar10(SHARED, cache=cache, verbose=False)


def test_the_shared_copy_loads_as_promised(shared_copy):
    cache, (x_train, y_train, x_test, y_test) = shared_copy
    assert x_train.shape == (50000, 3, 32, 32) and x_test.shape == (10000, 3, 32, 32)
    assert x_train.dtype == np.float32 and 0 <= x_train.min() and x_train.max() <= 1
    assert y_train.dtype == np.int64
    assert np.bincount(y_train).tolist() == [5000] * 10 and np.bincount(y_test).tolist() == [1000] * 10
    assert 0.4 < x_train.mean() < 0.55  # natural images, not noise or zeros
    # the second load reads the decoded arrays from the cache
    again = load_cifar10(SHARED, as_float=False, cache=cache, verbose=False)
    assert again[0].dtype == np.uint8
    np.testing.assert_array_equal(again[0][:100].astype(np.float32) / 255, x_train[:100])
    assert list(cache.glob("cifar10-*.npz"))


def _fake_arrays(n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n_train),
            rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n_test))


def _write_batches(directory: Path, arrays):
    x_train, y_train, x_test, y_test = arrays
    directory.mkdir(parents=True)
    parts = np.array_split(np.arange(len(x_train)), 5)
    for i, idx in enumerate(parts, 1):
        batch = {b"data": x_train[idx].reshape(len(idx), -1), b"labels": y_train[idx].tolist()}
        (directory / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"data": x_test.reshape(len(x_test), -1), b"labels": y_test.tolist()}
    (directory / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    return directory


def _tar(source: Path, target: Path):
    with tarfile.open(target, "w:gz") as tar:
        tar.add(source, arcname=source.name)
    return target


def _same(got, want):
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_official_batches_as_directory_and_archive(tmp_path):
    arrays = _fake_arrays()
    batches = _write_batches(tmp_path / "cifar-10-batches-py", arrays)
    _same(load_cifar10(batches, as_float=False, verbose=False), arrays)
    archive = _tar(batches, tmp_path / "cifar-10-python.tar.gz")
    _same(load_cifar10(archive, as_float=False, cache=tmp_path / "c2", verbose=False), arrays)
    # a directory holding the archive is found too
    only = tmp_path / "only"
    only.mkdir()
    archive.rename(only / archive.name)
    _same(load_cifar10(only, as_float=False, cache=tmp_path / "c3", verbose=False), arrays)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/fastconv-pwned",))


def test_a_crafted_pickle_is_refused_not_run(tmp_path):
    batches = _write_batches(tmp_path / "cifar-10-batches-py", _fake_arrays())
    (batches / "data_batch_3").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DatasetError, match="data_batch_3: not a CIFAR-10 batch .*refusing posix.system"):
        load_cifar10(batches, verbose=False)
    assert not Path("/tmp/fastconv-pwned").exists()


def test_image_folder_tree_and_its_archive(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    expected = {"train": [], "test": []}
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "ship"):
            (root / split / cls).mkdir(parents=True)
            for k in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{k:04d}.png")
                expected[split].append((cls, pixels))
    x_train, y_train, x_test, y_test = load_cifar10(root, as_float=False, verbose=False)
    assert x_train.shape == (6, 3, 32, 32) and x_test.shape == (4, 3, 32, 32)
    assert [CIFAR10_CLASSES[i] for i in y_train] == ["cat"] * 3 + ["ship"] * 3
    np.testing.assert_array_equal(x_train[0], expected["train"][0][1].transpose(2, 0, 1))  # PNG is lossless
    again = load_cifar10(_tar(root, tmp_path / "imgs.tar.gz"), as_float=False, cache=tmp_path / "c", verbose=False)
    _same(again, (x_train, y_train, x_test, y_test))


def test_wrong_class_folders_and_sizes_are_named(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        (tmp_path / split / "cats").mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / split / "cats" / "a.png")
    with pytest.raises(DatasetError, match="class folder 'cats' is not one of airplane"):
        load_cifar10(tmp_path, verbose=False)


def test_missing_pillow_says_how_to_get_it(tmp_path, monkeypatch):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "test" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "cat" / "a.png").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DatasetError, match="needs Pillow: pip install \"fastconv\\[images\\]\""):
        load_cifar10(tmp_path, verbose=False)


def _serve(directory: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_is_verified_by_md5_and_cached(tmp_path):
    arrays = _fake_arrays()
    site = tmp_path / "site"
    site.mkdir()
    archive = _tar(_write_batches(tmp_path / "cifar-10-batches-py", arrays), site / "cifar-10-python.tar.gz")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    server = _serve(site)
    url = f"http://127.0.0.1:{server.server_port}/cifar-10-python.tar.gz"
    try:
        tried = []
        bad = cifar10._download(url, "0" * 32, tmp_path / "cache-bad", lambda m: None, tried)
        assert bad is None and "md5" in tried[0].lower()  # a wrong hash is never used
        got = cifar10._download(url, md5, tmp_path / "cache", lambda m: None, [])
    finally:
        server.shutdown()
    _same(got, arrays)
    # the decoded arrays are what the next load takes, with no root and no network
    _same(load_cifar10(as_float=False, cache=tmp_path / "cache", verbose=False), arrays)


def test_nothing_available_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "OFFICIAL_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(DatasetError) as info:
        load_cifar10(tmp_path / "nowhere", cache=tmp_path / "cache", verbose=False)
    text = str(info.value)
    assert "nowhere: does not exist" in text and "no decoded CIFAR-10" in text and "127.0.0.1:9" in text
    assert "../shared/data/cifar10-images.tar.gz" in text


def _tiny_folder_set(root: Path, per_class=6, seed=0):
    """A small CIFAR-shaped image-folder set: each class a colour, plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for k, cls in enumerate(CIFAR10_CLASSES):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(25 * k, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i:04d}.png")
    return root


def test_training_command_on_cifar10_with_every_recipe_option(tmp_path):
    from fastconv import train as train_cmd

    data = _tiny_folder_set(tmp_path / "data")
    metrics = train_cmd.main(["--dataset", "cifar10", "--arch", "simple_cnn", "--data-dir", str(data),
                              "--epochs", "2", "--batch-size", "16", "--augment", "--label-smoothing", "0.1",
                              "--schedule", "triangular", "--ema", "0.9", "--tta", "--lr", "0.05",
                              "--out", str(tmp_path / "run")])
    assert metrics["args"]["dataset"] == "cifar10" and len(metrics["epochs"]) == 2
    assert (tmp_path / "run" / "confusion.png").exists()
    # the saved model is the averaged one that was evaluated, and takes [0, 1] images as they are
    model = fastconv_load(tmp_path / "run" / "model.npz")
    x_test = load_cifar10(data, verbose=False)[2]
    preds = model.predict(x_test)
    assert preds.shape == (len(x_test),)
    # resuming keeps the weight average
    train_cmd.main(["--resume", str(tmp_path / "run" / "checkpoint.npz"), "--no-plots"])


def test_an_mnist_architecture_on_cifar10_is_refused(tmp_path):
    from fastconv import train as train_cmd

    data = _tiny_folder_set(tmp_path / "data", per_class=2)
    with pytest.raises(SystemExit, match="--arch seed takes 1-channel images; cifar10 has 3.*simple_cnn"):
        train_cmd.main(["--dataset", "cifar10", "--arch", "seed", "--data-dir", str(data), "--out", str(tmp_path)])


def fastconv_load(path):
    from fastconv import load_model

    return load_model(path)
