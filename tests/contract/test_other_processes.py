"""The contract suite for the frameworks this process cannot host (a Keras backend other than
the one this process has), each run in a pytest process of its own with its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compare.engine import registry
from tests.contract.conftest import REQUIRED, hosted_here

REPO = Path(__file__).resolve().parents[2]
ELSEWHERE = [name for name in registry.frameworks() if not hosted_here(name)]


@pytest.mark.skipif(
    bool(os.environ.get("CNN_CONTRACT_FRAMEWORKS")), reason="already inside such a process"
)
@pytest.mark.parametrize("other", ELSEWHERE)
def test_contract_in_its_own_process(other: str) -> None:
    name = other
    missing = registry.missing_modules(name)
    if missing:
        message = f"framework {name!r} is not installed (missing {', '.join(missing)})"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    env = {
        **os.environ,
        **registry.get(name).env,
        "CNN_CONTRACT_FRAMEWORKS": name,
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/contract/test_contract.py",
            "tests/contract/test_families.py",
            "tests/contract/test_schedule.py",
            "tests/contract/test_frozen.py",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, f"{name}: {summary}\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    assert " passed" in summary and "skipped" not in summary, summary
