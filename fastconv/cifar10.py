"""CIFAR-10: 50 000 training and 10 000 test images, 32x32 RGB, 10 classes.

``load_cifar10(root=None, as_float=True)`` returns ``(x_train, y_train,
x_test, y_test)``: float32 (N, 3, 32, 32) in [0, 1] (uint8 with
``as_float=False``) and int64 labels in the order of ``CIFAR10_CLASSES``.
Sources, in order (see ../shared/DATA.md):

1. ``root`` / ``--data-dir`` / ``$FASTCONV_DATA_DIR``: the official
   ``cifar-10-batches-py`` directory or its ``cifar-10-python.tar.gz``, or an
   image-folder tree (``train/<class>/*``, ``test/<class>/*``, PNG or JPEG) or
   a ``.tar.gz`` of one;
2. the cache: decoded arrays, one file per source, so a second load takes
   about a second;
3. the official ``cifar-10-python.tar.gz``, fetched with pooch and verified
   by its published MD5 before use.

The official batches are Python pickles: they are read with an unpickler
that admits only NumPy's array reconstruction (a file is untrusted input).
Decoding PNG/JPEG needs Pillow (``pip install "fastconv[images]"``).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from .datasets import DatasetError, cache_dir

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
# The JPEG copy the project's tests and CI use (../shared/DATA.md); checked when a file of that name is given.
SHARED_COPY = ("cifar10-images.tar.gz", "bf814a59ca2d813a9fdd28b6243a6a8e8d13cd4f0f6bfba4bc62b5548fa400f3")
_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_logger = logging.getLogger(__name__)


def load_cifar10(root=None, as_float=True, *, cache=None, verbose=True):
    """(x_train, y_train, x_test, y_test) of CIFAR-10 (see the module docstring)."""
    log = _logger.info if verbose else (lambda msg: None)
    cache = Path(cache) if cache is not None else cache_dir("cifar10")
    root = root if root is not None else os.environ.get("FASTCONV_DATA_DIR")
    tried = []
    arrays = None
    if root:
        arrays = _from_root(Path(root), cache, log, tried)
    if arrays is None:
        arrays = _from_cache(cache, log, tried)
    if arrays is None:
        arrays = _download(OFFICIAL_URL, OFFICIAL_MD5, cache, log, tried)
    if arrays is None:
        lines = "\n  ".join(tried)
        raise DatasetError(
            f"could not get CIFAR-10. Tried:\n  {lines}\nGive the official cifar-10-batches-py directory or "
            f"cifar-10-python.tar.gz, or an image-folder tree (train/<class>/*, test/<class>/*) or a .tar.gz of "
            f"one, as root= (or --data-dir, or $FASTCONV_DATA_DIR); the project's copy is "
            f"../shared/data/cifar10-images.tar.gz.")
    x_train, y_train, x_test, y_test = arrays
    if as_float:
        x_train = x_train.astype(np.float32) / np.float32(255)
        x_test = x_test.astype(np.float32) / np.float32(255)
    return x_train, y_train, x_test, y_test


# ------------------------------------------------------------------ sources
def _from_root(root: Path, cache: Path, log, tried):
    if not root.exists():
        tried.append(f"{root}: does not exist")
        return None
    candidates = list(_candidates(root))
    for candidate in candidates:
        key = _source_key(candidate)
        cached = _read_cache(cache / f"cifar10-{key}.npz")
        if cached is not None:
            log(f"CIFAR-10 from the cache of {candidate}")
            return cached
        try:
            arrays = _decode(candidate)
        except DatasetError as exc:
            tried.append(f"{candidate}: {exc}")
            continue
        log(f"CIFAR-10 decoded from {candidate}")
        _write_cache(cache / f"cifar10-{key}.npz", arrays, str(candidate))
        return arrays
    if not candidates:
        tried.append(f"{root}: holds no CIFAR-10 (no cifar-10-batches-py, train/ and test/, or .tar.gz)")
    return None


def _candidates(root: Path):
    """root itself if it is a source, else the sources directly inside it."""
    if _kind(root) is not None:
        yield root
        return
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if _kind(child) is not None:
                yield child


def _kind(path: Path):
    if path.is_dir():
        if all((path / b).is_file() for b in _BATCHES):
            return "batches"
        if (path / "train").is_dir() and (path / "test").is_dir():
            return "folders"
        return None
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    return None


def _from_cache(cache: Path, log, tried):
    if not cache.is_dir():
        tried.append(f"cache {cache}: no decoded CIFAR-10")
        return None
    files = sorted(cache.glob("cifar10-*.npz"), key=lambda p: (p.name != "cifar10-official.npz", p.name))
    for path in files:
        arrays = _read_cache(path)
        if arrays is not None:
            log(f"CIFAR-10 from the cache {path}")
            return arrays
        tried.append(f"cache {path}: unreadable, ignored")
    if not files:
        tried.append(f"cache {cache}: no decoded CIFAR-10")
    return None


def _download(url, md5, cache: Path, log, tried):
    try:
        import pooch
    except ImportError:
        tried.append(f"{url}: pooch is not installed (pip install pooch)")
        return None
    try:
        path = pooch.retrieve(url, known_hash=f"md5:{md5}", fname="cifar-10-python.tar.gz", path=cache,
                              progressbar=False)
    except Exception as exc:  # noqa: BLE001 - network, HTTP, hash mismatch: all reported, then the next step
        tried.append(f"{url}: {type(exc).__name__}: {exc}")
        return None
    arrays = _decode(Path(path))
    _write_cache(cache / "cifar10-official.npz", arrays, url)
    log(f"CIFAR-10 downloaded from {url} (MD5 verified)")
    return arrays


# ------------------------------------------------------------------ cache
def _source_key(path: Path) -> str:
    """Names the decoded arrays of one source: its resolved path, size and mtime."""
    stat = path.stat()
    ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _read_cache(path: Path):
    if not path.is_file():
        return None
    from ._npz import read_npz

    try:
        data = read_npz(path, "CIFAR-10 cache")
        arrays = tuple(data[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        _check_arrays(*arrays)
        return arrays
    except (ValueError, KeyError, DatasetError):
        return None


def _write_cache(path: Path, arrays, source: str) -> None:
    from ._npz import write_npz

    path.parent.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = arrays
    write_npz(path, dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, source=np.array(source)))


def _check_arrays(x_train, y_train, x_test, y_test):
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32) or y.shape != (len(x),):
            raise DatasetError(f"{split} arrays have shapes {x.shape} {x.dtype} and {y.shape}; expected "
                               f"(N, 3, 32, 32) uint8 and (N,)")
        if len(y) and (y.min() < 0 or y.max() >= len(CIFAR10_CLASSES)):
            raise DatasetError(f"{split} labels outside 0..9")


# ------------------------------------------------------------------ decoding
def _decode(path: Path):
    kind = _kind(path)
    if kind == "batches":
        arrays = _from_batches({b: (path / b).read_bytes() for b in _BATCHES})
    elif kind == "folders":
        arrays = _from_files(((p.relative_to(path).as_posix(), p.read_bytes()) for p in sorted(path.rglob("*"))
                              if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES), str(path))
    elif kind == "tar":
        _check_shared_copy(path)
        arrays = _from_tar(path)
    else:
        raise DatasetError("not a CIFAR-10 source")
    _check_arrays(*arrays)
    return arrays


def _check_shared_copy(path: Path) -> None:
    name, sha = SHARED_COPY
    if path.name != name:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha:
        raise DatasetError(f"{path} fails its SHA-256 check (got {digest.hexdigest()}, expected {sha}); "
                           f"the file is corrupt or not the project's copy")


def _from_tar(path: Path):
    try:
        with tarfile.open(path) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            batches = {Path(m.name).name: m for m in members if Path(m.name).name in _BATCHES}
            if len(batches) == len(_BATCHES):
                return _from_batches({name: tar.extractfile(m).read() for name, m in batches.items()})
            images = [m for m in members if Path(m.name).suffix.lower() in _IMAGE_SUFFIXES]
            return _from_files(((m.name, tar.extractfile(m).read()) for m in sorted(images, key=lambda m: m.name)),
                               str(path))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"unreadable archive: {type(exc).__name__}: {exc}") from None


def _from_files(files, where: str):
    """Images named .../{train,test}/<class>/<file> -> arrays, in name order."""
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError("decoding PNG/JPEG images needs Pillow: pip install \"fastconv[images]\"") from None
    found = {"train": ([], []), "test": ([], [])}
    for name, data in files:
        parts = Path(name).parts
        if len(parts) < 3 or parts[-3] not in found:
            continue
        split, cls = parts[-3], parts[-2]
        if cls not in CIFAR10_CLASSES:
            raise DatasetError(f"{name}: class folder {cls!r} is not one of {', '.join(CIFAR10_CLASSES)}")
        try:
            with Image.open(io.BytesIO(data)) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except Exception as exc:  # noqa: BLE001 - any decoder error names the file
            raise DatasetError(f"{name}: not a readable image ({exc})") from None
        if pixels.shape != (32, 32, 3):
            raise DatasetError(f"{name}: image of size {pixels.shape[1]}x{pixels.shape[0]}; CIFAR-10 is 32x32")
        found[split][0].append(pixels.transpose(2, 0, 1))
        found[split][1].append(CIFAR10_CLASSES.index(cls))
    if not found["train"][0] or not found["test"][0]:
        raise DatasetError(f"{where} has no images under train/<class>/ and test/<class>/")
    out = []
    for split in ("train", "test"):
        images, labels = found[split]
        out += [np.stack(images), np.asarray(labels, dtype=np.int64)]
    return tuple(out)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles the official batches (dicts of bytes, lists and NumPy
    arrays) and nothing else: a crafted file cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}  # how protocol 2 stores bytes: text -> bytes, no code runs

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a CIFAR-10 batch holds only arrays")


def _from_batches(raw: dict):
    parts = {}
    for name, data in raw.items():
        try:
            batch = _ArraysOnly(io.BytesIO(data), encoding="bytes").load()
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, name it
            raise DatasetError(f"{name}: not a CIFAR-10 batch ({type(exc).__name__}: {exc})") from None
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            raise DatasetError(f"{name}: not a CIFAR-10 batch (no data/labels entries)")
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise DatasetError(f"{name}: data {data.shape} {data.dtype} and {labels.shape} labels; expected "
                               f"(N, 3072) uint8 and N labels")
        parts[name] = (data.reshape(-1, 3, 32, 32), labels)
    x_train = np.concatenate([parts[b][0] for b in _BATCHES[:-1]])
    y_train = np.concatenate([parts[b][1] for b in _BATCHES[:-1]])
    return x_train, y_train, parts["test_batch"][0], parts["test_batch"][1]
