"""Shared fixtures: the real data (required in CI), a private KERAS_HOME, a temp cache."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from cnn_common.data import Data, prepare_data
from cnn_common.errors import DataError

REQUIRE_DATA = bool(os.environ.get("CI") or os.environ.get("CNN_REQUIRE_DATA"))

# Keras writes ~/.keras/keras.json when it is first imported, which may happen while test
# modules are collected: point it at a private folder before anything can import it. The
# process that makes it (the controller; workers and commands inherit it) removes it at exit.
if "KERAS_HOME" not in os.environ:
    os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="cnn-rosetta-keras-")
    atexit.register(shutil.rmtree, os.environ["KERAS_HOME"], ignore_errors=True)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Commands under test run in temporary folders: a relative data folder (CI passes
# ../shared/data) must name the same place there.
if os.environ.get("CNN_DATA_DIR"):
    os.environ["CNN_DATA_DIR"] = str(Path(os.environ["CNN_DATA_DIR"]).resolve())


def pytest_configure(config: pytest.Config) -> None:
    """With pytest-xdist workers, each computes with one thread unless told otherwise: the
    workers already fill the cores, and two trainings of several threads each on the same
    cores spend their time waiting on each other's threads. Set here in the controller, before
    the workers start, so every framework reads it when it loads."""
    workers = getattr(config.option, "numprocesses", None)
    if workers and not os.environ.get("PYTEST_XDIST_WORKER"):
        from compare.engine.launch import THREAD_VARIABLES

        for variable in THREAD_VARIABLES:
            os.environ.setdefault(variable, "1")


def _data_or_skip(name: str) -> Data:
    try:
        return prepare_data(name, download=False)
    except DataError as exc:
        if REQUIRE_DATA:
            pytest.fail(f"real data needed in CI: {exc}")
        pytest.skip(f"{name} not available: set CNN_DATA_DIR ({exc.message.splitlines()[0]})")


@pytest.fixture(scope="session")
def mnist() -> Data:
    """MNIST split 55,000 / 5,000 / 10,000 (seed 0), float32 in [0, 1]."""
    return _data_or_skip("mnist")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding ``mnist/`` and ``fashion-mnist/`` (``$CNN_DATA_DIR``)."""
    value = os.environ.get("CNN_DATA_DIR")
    if not value or not Path(value, "mnist").is_dir():
        if REQUIRE_DATA:
            pytest.fail("CNN_DATA_DIR must point at the offline data in CI")
        pytest.skip("CNN_DATA_DIR not set")
    return Path(value).resolve()
