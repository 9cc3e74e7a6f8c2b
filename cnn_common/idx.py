"""IDX files, the format MNIST and Fashion-MNIST are published in: parsing, checksums, contents.

An IDX file is a 4-byte magic number (two zero bytes, the dtype code, the number of
dimensions), one big-endian 4-byte size per dimension, then the data. A dataset's four files
(``cnn_common.datasets.FILES``) are images ``(N, H, W)`` and labels ``(N,)``, both ``uint8``.
``cnn_common.data`` decides where the files are looked for; this module reads one it found.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from cnn_common.datasets import FILES, DatasetInfo
from cnn_common.errors import DataError

_IDX_DTYPES = {0x08: np.uint8}


def parse_idx(raw: bytes, source: str) -> np.ndarray:
    """Parse IDX bytes; check the magic number, dimensions and length against the header.

    Raises ``DataError`` naming ``source`` when the file is truncated or corrupt.
    """
    hint = f"delete {source} and fetch it again (or point --data-dir at a good copy)"
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{source} is not an IDX file (bad magic number)", hint)
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code not in _IDX_DTYPES or ndim not in (1, 3):
        raise DataError(
            f"{source}: unexpected IDX magic number 0x{raw[:4].hex()} "
            "(expected 0x00000801 for labels or 0x00000803 for images)",
            hint,
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{source} is truncated: {len(raw)} bytes, shorter than its header", hint)
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{source} is {state}: {len(raw)} bytes, the header {dims} needs {expected}", hint
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path, stem: str, info: DatasetInfo) -> tuple[np.ndarray, bool]:
    """Read and parse a (possibly gzipped) IDX file; also say whether its checksum matches
    (the caller looks at that after the contents, so a damaged file gets the precise message)."""
    data = path.read_bytes()
    gz_ok = hashlib.md5(data).hexdigest() == info.gz_md5[stem]
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except EOFError:
            raise DataError(
                f"{path} is truncated (its gzip stream ends early)",
                f"delete {path} and fetch it again",
            ) from None
        except OSError as exc:
            raise DataError(
                f"{path} is not a readable gzip file ({exc})", f"delete {path} and fetch it again"
            ) from None
    array = parse_idx(data, str(path))
    return array, gz_ok or hashlib.md5(data).hexdigest() == info.raw_md5[stem]


def check_contents(arrays: dict[str, np.ndarray], info: DatasetInfo, names: dict[str, str]) -> None:
    """Images ``(N, H, W)`` with as many labels ``(N,)``, each a class of the dataset; ``names``
    gives each file's path for the message."""
    classes = len(info.class_names)
    for images, labels, part in ((FILES[0], FILES[1], "train"), (FILES[2], FILES[3], "test")):
        x, y = arrays[images], arrays[labels]
        pair = f"{names[images]} and {names[labels]}"
        hint = f"replace {pair} with the official {info.name} files"
        if x.ndim != 3 or y.ndim != 1:
            raise DataError(
                f"{info.name} {part}: expected images (N, H, W) and labels (N,) in {pair}, "
                f"found {x.shape} and {y.shape}",
                hint,
            )
        if len(x) != len(y):
            raise DataError(
                f"{info.name} {part}: {len(x):,} images but {len(y):,} labels in {pair}", hint
            )
        wrong = np.flatnonzero(y >= classes)
        if wrong.size:
            raise DataError(
                f"{names[labels]}: label {int(y[wrong[0]])} at index {int(wrong[0])} is not a "
                f"class of {info.name} (0 to {classes - 1}); {wrong.size:,} label(s) out of range",
                f"replace {names[labels]} with the official {info.name} file",
            )
