"""The example specs shipped in examples/ load, and seed.yaml is exactly the default spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnn_common.spec import ModelSpec, TrainSpec, load_spec, param_count

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_seed_yaml_is_the_default_spec() -> None:
    assert load_spec(EXAMPLES / "seed.yaml") == (ModelSpec(), TrainSpec())


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_specs_load(path: Path) -> None:
    model, _ = load_spec(path)
    assert param_count(model) > 0
