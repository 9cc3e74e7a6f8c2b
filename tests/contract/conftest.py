"""The contract suite runs once per registered framework this process can host.

Keras reads its backend once per process, so the suite runs in-process for the frameworks
whose environment agrees with this process (numpy, keras on TensorFlow, lightning, pytorch and
any third-party framework without an environment of its own), and ``tests/test_contract.py``
runs it again in a subprocess for each of the others (keras-torch, keras-jax) with
``CNN_CONTRACT_FRAMEWORKS`` naming them. A framework that is not installed is skipped, except
in CI (``CI`` or ``CNN_REQUIRE_DATA`` set), where it fails.
"""

from __future__ import annotations

import os

import pytest

from compare.engine import registry

REQUIRED = bool(os.environ.get("CI") or os.environ.get("CNN_REQUIRE_DATA"))


def hosted_here(name: str) -> bool:
    """Whether this process can run ``name``: its environment agrees with this process's."""
    env = registry.get(name).env
    if "KERAS_BACKEND" in env:
        return env["KERAS_BACKEND"] == os.environ.get("KERAS_BACKEND", "tensorflow")
    return all(os.environ.get(k, v) == v for k, v in env.items())


def contract_frameworks() -> list[str]:
    chosen = os.environ.get("CNN_CONTRACT_FRAMEWORKS")
    if chosen:
        return chosen.split(",")
    return [name for name in registry.frameworks() if hosted_here(name)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "name" in metafunc.fixturenames:
        metafunc.parametrize("name", contract_frameworks(), indirect=True, scope="session")


@pytest.fixture(scope="session")
def name(request: pytest.FixtureRequest) -> str:
    """The registered name of the framework under test."""
    return request.param


@pytest.fixture(scope="session")
def framework(name: str):  # noqa: ANN201 - the framework's package
    """The framework's package, imported as compare imports it."""
    missing = registry.missing_modules(name)
    if missing:
        message = f"framework {name!r} is not installed (missing {', '.join(missing)})"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return registry.load(name)


@pytest.fixture(scope="session")
def info(name: str, framework):  # noqa: ANN001, ANN201 - the framework's declaration
    return registry.get(name)
