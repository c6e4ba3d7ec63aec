"""Reading and writing the .npz files fastconv saves (models, checkpoints).

A file read from disk is untrusted input: ``read_npz`` turns every way it can
be wrong (not a zip, truncated, a member that is not an array, a header that
declares more data than the file holds) into one ``ValueError`` naming the
file, and never allocates more than the file can fill.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

# deflate cannot expand data by more than ~1032x; a member declaring more
# than this many bytes per stored byte is not what np.savez_compressed wrote.
_MAX_DEFLATE_RATIO = 1032


def read_npz(path, what: str) -> dict[str, np.ndarray]:
    """Every array of the .npz at ``path``, loaded with allow_pickle=False.

    ``what`` names the kind of file for messages ("fastconv model", ...).
    FileNotFoundError passes through; anything else wrong is a ValueError."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {}
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not a .npy array")
                with archive.open(info) as member:
                    arrays[info.filename[:-4]] = _read_member(member, info)
            return arrays
    except ValueError as exc:
        raise ValueError(f"{path} is not a readable {what}: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, RuntimeError, KeyError,
            NotImplementedError) as exc:
        raise ValueError(f"{path} is not a readable {what} (corrupt or truncated?): "
                         f"{type(exc).__name__}: {exc}") from None


def _read_member(member, info: zipfile.ZipInfo) -> np.ndarray:
    fmt = np.lib.format
    version = fmt.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(member)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = fmt.read_array_header_2_0(member)
    else:
        raise ValueError(f"{info.filename!r}: unsupported .npy version {version}")
    if dtype.hasobject:
        raise ValueError(f"{info.filename!r} holds Python objects; fastconv files hold only numbers")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    limit = info.file_size if info.compress_type == zipfile.ZIP_STORED else min(
        info.file_size, info.compress_size * _MAX_DEFLATE_RATIO)
    if declared > limit:
        raise ValueError(f"{info.filename!r} declares shape {shape} of {dtype} ({declared:,} bytes), "
                         f"but the file holds at most {limit:,} bytes for it")
    data = member.read(declared)
    if len(data) != declared:
        raise ValueError(f"{info.filename!r} is truncated: {len(data):,} of {declared:,} bytes")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def write_npz(path, arrays: dict) -> None:
    """Write ``arrays`` to ``path`` atomically: into ``<path>.tmp`` beside it,
    flushed to disk, then renamed over ``path``, so a crash never leaves a
    half-written file under the real name.  The temporary name is fixed, so a
    write that was killed leaves at most one ``.tmp``, which the next write
    replaces; the file gets the usual mode (0666 less the umask)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
