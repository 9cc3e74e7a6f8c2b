"""Fixtures of the data tests (``test_data``, ``test_idx``, ``test_download``): the real MNIST
files parsed once, and a sandbox where no place the loader looks holds data unless a test puts
it there."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from cnn_common import data as data_mod
from cnn_common.data import RawDataset, load_dataset
from cnn_common.datasets import FILES

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(scope="session")
def raw_mnist(data_dir: Path) -> RawDataset:
    return load_dataset("mnist", root=data_dir, download=False)


@pytest.fixture()
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No place the loader looks holds data unless the test puts it there.

    The cache, HOME (Keras's ~/.keras) and Debian's folder point into ``tmp_path``, and
    ``$CNN_DATA_DIR`` / ``$CNN_DATA_MIRRORS`` are unset: the user's files are never read or
    written.
    """
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CNN_DATA_DIR", raising=False)
    monkeypatch.delenv("CNN_DATA_MIRRORS", raising=False)
    monkeypatch.setattr(data_mod, "DEBIAN_DIR", tmp_path / "debian")
    return tmp_path


@pytest.fixture()
def mnist_copy(isolated: Path, data_dir: Path) -> Path:
    """A copy of the four real MNIST .gz files in ``<tmp>/root/mnist``; returns ``<tmp>/root``."""
    folder = isolated / "root" / "mnist"
    folder.mkdir(parents=True)
    for stem in FILES:
        shutil.copyfile(data_dir / "mnist" / f"{stem}.gz", folder / f"{stem}.gz")
    return isolated / "root"


def files_under(folder: Path) -> list[str]:
    """Every file (hidden ones and temporary leftovers included) below ``folder``."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
