"""cnn_common.idx: IDX parsing and the checks of a file found: a truncated gzip or IDX file, a
bad magic number, a checksum that does not match; each error names the file and the fix."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from cnn_common.data import load_dataset
from cnn_common.errors import DataError
from cnn_common.idx import parse_idx


def _damage_truncated_gz(path: Path) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _damage_truncated_idx(path: Path) -> Path:
    raw = gzip.decompress(path.read_bytes())
    path.unlink()
    target = path.with_suffix("")  # an uncompressed copy, 100 bytes short
    target.write_bytes(raw[:-100])
    return target


def _damage_magic(path: Path) -> Path:
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[2] = 0x0D  # the dtype byte: 0x0D is float32 in IDX, not MNIST's 0x08
    path.write_bytes(gzip.compress(bytes(raw), compresslevel=1))
    return path


def _damage_one_byte(path: Path) -> Path:
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10  # still a valid IDX file: only the content changed
    path.write_bytes(gzip.compress(bytes(raw), compresslevel=1))
    return path


@pytest.mark.parametrize(
    ("damage", "stem", "words"),
    [
        (_damage_truncated_gz, "t10k-labels-idx1-ubyte", ["truncated"]),
        (_damage_truncated_gz, "train-images-idx3-ubyte", ["truncated"]),
        (_damage_truncated_idx, "t10k-labels-idx1-ubyte", ["truncated", "needs 10008"]),
        (_damage_magic, "train-labels-idx1-ubyte", ["magic number", "0x00000d01"]),
        (_damage_one_byte, "t10k-labels-idx1-ubyte", ["checksum", "27ae3e4e"]),
        (_damage_one_byte, "t10k-images-idx3-ubyte", ["checksum", "2646ac64"]),
    ],
)
def test_bad_file_names_the_file_and_the_fix(
    mnist_copy: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path, damage, stem: str, words
) -> None:
    bad = damage(mnist_copy / "mnist" / f"{stem}.gz")
    # A good copy elsewhere must not hide the bad file the user pointed at.
    monkeypatch.setenv("CNN_DATA_DIR", str(data_dir))
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=mnist_copy, download=False)
    err = info.value
    assert str(bad) in err.message
    for word in words:
        assert word in err.message
    assert str(bad) in err.hint and "fetch" in err.hint
    assert f"{err.message}\n  fix: {err.hint}" == str(err)


def test_truncated_idx_message_gives_the_sizes(mnist_copy: Path) -> None:
    bad = _damage_truncated_idx(mnist_copy / "mnist" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=mnist_copy, download=False)
    # 8-byte header + 10,000 labels; the copy is 100 bytes short
    assert f"{bad} is truncated: 9908 bytes, the header (10000,) needs 10008" in str(info.value)


def test_parse_idx_rejects_a_longer_file() -> None:
    raw = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3, 4])
    with pytest.raises(DataError, match="longer than its header says"):
        parse_idx(raw, "x.idx")
    np.testing.assert_array_equal(parse_idx(raw[:-1], "x.idx"), [1, 2, 3])
