"""The keras_cnn modules as fixtures, imported on first use rather than at collection: the
project's conftest points KERAS_HOME at a temporary folder first (importing keras writes
keras.json there)."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def keras() -> ModuleType:
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def km(keras: ModuleType) -> ModuleType:
    """keras_cnn.model (the contract's module)."""
    return importlib.import_module("keras_cnn.model")


@pytest.fixture(scope="module")
def kn(keras: ModuleType) -> ModuleType:
    """keras_cnn.network."""
    return importlib.import_module("keras_cnn.network")


@pytest.fixture(scope="module")
def ko(keras: ModuleType) -> ModuleType:
    """keras_cnn.optim."""
    return importlib.import_module("keras_cnn.optim")


@pytest.fixture(scope="module")
def kt(keras: ModuleType) -> ModuleType:
    """keras_cnn.training."""
    return importlib.import_module("keras_cnn.training")
