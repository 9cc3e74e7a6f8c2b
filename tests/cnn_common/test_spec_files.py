"""cnn_common.spec_files: spec files (YAML, JSON) and ``key=value`` overrides; every error
names the file and line, or the field, and what would be accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnn_common.errors import SpecError
from cnn_common.spec import (
    ConvBlock,
    DenseLayer,
    ModelSpec,
    TrainSpec,
    layer_shapes,
    spec_to_dict,
)
from cnn_common.spec_files import apply_overrides, load_spec, save_spec, yaml_load

# ----------------------------------------------------------------------------- files, overrides


def custom_specs() -> tuple[ModelSpec, TrainSpec]:
    model = ModelSpec(
        input_shape=(32, 30, 3),
        conv=(
            ConvBlock(filters=8, kernel_size=3, stride=2, padding="same", activation="tanh"),
            ConvBlock(filters=12, kernel_size=4, padding="same", pool_size=0),
        ),
        dense=(DenseLayer(units=40, dropout=0.25), DenseLayer(units=20, activation="sigmoid")),
        num_classes=5,
    )
    train = TrainSpec(
        epochs=2,
        optimizer="sgd",
        learning_rate=0.05,
        momentum=0.8,
        epsilon=1e-7,
        epsilon_convention="keras",
        augment_shift=2,
        dtype="float64",
        seed=9,
    )
    return model, train


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_spec_file_round_trip(tmp_path, suffix: str) -> None:
    model, train = custom_specs()
    path = tmp_path / f"spec{suffix}"
    save_spec(path, model, train)
    assert load_spec(path) == (model, train)
    if suffix == ".json":
        assert json.loads(path.read_text()) == spec_to_dict(model, train)


def test_hand_written_yaml_reads_exponent_floats(tmp_path) -> None:
    # PyYAML's YAML 1.1 reads "1e-3" as a string; a spec must read it as the number it is.
    path = tmp_path / "spec.yaml"
    path.write_text(
        "model:\n  conv:\n    - {filters: 8}\n  dense: []\n"
        "train:\n  learning_rate: 1e-3\n  epsilon: 1E-7\n  epochs: 2\n"
    )
    model, train = load_spec(path)
    assert train.learning_rate == 1e-3 and train.epsilon == 1e-7 and train.epochs == 2
    assert model.conv == (ConvBlock(filters=8),) and model.dense == ()
    assert layer_shapes(model)["flatten"] == (12 * 12 * 8,)


def test_empty_spec_file_gives_defaults(tmp_path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_spec(path) == (ModelSpec(), TrainSpec())


def test_unreadable_spec_files(tmp_path) -> None:
    with pytest.raises(SpecError, match="cannot read spec file .*nope.yaml"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{model: ")
    with pytest.raises(SpecError, match=r"bad\.json is not valid JSON at line 1"):
        load_spec(bad)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(SpecError, match="bad.yaml is not valid"):
        load_spec(bad)


def test_overrides() -> None:
    model, train = apply_overrides(
        ModelSpec(),
        TrainSpec(),
        [
            "epochs=3",
            "train.seed=7",
            "learning_rate=1e-3",
            "optimizer=sgd",
            "conv.0.filters=8",
            "model.dense.0.units=128",
            "conv.1.padding=same",
            "input_shape=[32, 32, 3]",
        ],
    )
    assert (train.epochs, train.seed, train.learning_rate, train.optimizer) == (3, 7, 1e-3, "sgd")
    assert model.conv[0].filters == 8 and model.conv[1].padding == "same"
    assert model.dense[0].units == 128 and model.input_shape == (32, 32, 3)
    # untouched fields keep their values
    assert model.conv[1].filters == 32 and train.batch_size == 128


def test_no_overrides_change_nothing() -> None:
    model, train = custom_specs()
    assert apply_overrides(model, train, []) == (model, train)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("foo=1", ["'foo'", "no field"]),
        ("conv.0.filterz=8", ["'filterz'"]),
        ("conv.5.filters=8", ["'5'", "below 2"]),
        ("conv.x.filters=8", ["'x'"]),
        ("epochs", ["not key=value"]),
        ("epochs=0", ["epochs must be"]),
        ("conv.0.filters=0", ["conv[0].filters"]),
        ("dense.0.dropout=-0.5", ["dense[0].dropout"]),
    ],
)
def test_bad_override_is_named(override: str, words: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        apply_overrides(ModelSpec(), TrainSpec(), [override])
    for word in words:
        assert word in info.value.message


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-3", 1e-3), ("1E-3", 1e-3), ("+2e-4", 2e-4), ("1.5e2", 150.0), ("0.01", 0.01), ("3", 3)],
)
def test_override_numbers_in_every_usual_form(text: str, value: float) -> None:
    _, train = apply_overrides(ModelSpec(), TrainSpec(), [f"learning_rate={text}"])
    assert train.learning_rate == value and isinstance(train.learning_rate, (int, float))


def test_yaml_load_reads_exponent_floats_and_nothing_unsafe() -> None:
    assert yaml_load("a: 1e-3\nb: -2E+4\nc: 1.5e2\nd: '1e-3'\ne: 3") == {
        "a": 1e-3,
        "b": -2e4,
        "c": 150.0,
        "d": "1e-3",  # quoted: still a string
        "e": 3,
    }
    import yaml

    with pytest.raises(yaml.YAMLError):
        yaml_load("!!python/object/apply:os.system ['true']")


def test_spec_errors_name_the_file_the_line_and_the_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a folder"):
        load_spec(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  conv: [1, 2\n")
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert f"spec file {bad} is not valid YAML at line" in info.value.message
    assert "examples/seed.yaml" in info.value.hint
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"conv": }}')
    with pytest.raises(SpecError, match=r"bad\.json is not valid JSON at line 1, column 20"):
        load_spec(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("train:\n  epochs: 0\n")
    with pytest.raises(SpecError) as info:
        load_spec(wrong)
    assert info.value.message.startswith(f"spec file {wrong}: epochs must be")


def test_override_hints_at_the_closest_field() -> None:
    with pytest.raises(SpecError) as info:
        apply_overrides(ModelSpec(), TrainSpec(), ["conv.0.filterz=8"])
    assert "did you mean 'filters'?" in info.value.hint
    with pytest.raises(SpecError) as info:
        apply_overrides(ModelSpec(), TrainSpec(), ["conv.0.filters=0"])
    assert info.value.message.startswith("after --set: conv[0].filters")


def test_override_without_a_section_looks_in_train_then_model() -> None:
    model, train = apply_overrides(ModelSpec(), TrainSpec(), ["seed=4", "num_classes=3"])
    assert train.seed == 4 and model.num_classes == 3
    assert apply_overrides(ModelSpec(), TrainSpec(), ["model.num_classes=3"])[0] == model
