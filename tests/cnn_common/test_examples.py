"""The example specs shipped in examples/ load, and seed.yaml is exactly the default spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnn_common.spec import ModelSpec, TrainSpec, param_count
from cnn_common.spec_files import load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_examples_are_found() -> None:
    # a wrong EXAMPLES path would leave the parametrised test below with nothing to check
    assert {"seed.yaml", "wide_same.yaml"} <= {p.name for p in EXAMPLES.glob("*.yaml")}


def test_seed_yaml_is_the_default_spec() -> None:
    assert load_spec(EXAMPLES / "seed.yaml") == (ModelSpec(), TrainSpec())


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_specs_load(path: Path) -> None:
    model, _ = load_spec(path)
    assert param_count(model) > 0
