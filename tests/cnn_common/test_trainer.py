"""cnn_common.trainer: the checks every ``train`` makes from the declaration, the recorder it
gets, and resume or start clean with a damaged checkpoint skipped and warned about."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from cnn_common.data import Data
from cnn_common.errors import UserError
from cnn_common.files import checkpoint_path, list_checkpoints
from cnn_common.framework import TOPICS, FrameworkInfo
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.trainer import TrainingRun

ONE_PROCESS = FrameworkInfo(
    name="demo",
    label="Demo",
    package="demo_cnn",
    requires=(),
    extra="",
    native={topic: "its own" for topic in TOPICS},
    model_suffix=".npz",
)
SEVERAL = dataclasses.replace(ONE_PROCESS, data_parallel=True)


def tiny_data() -> Data:
    x = np.zeros((8, 28, 28, 1), np.float32)
    y = np.arange(8, dtype=np.int64) % 2
    return Data("tiny", x, y, x[:2], y[:2], x[:2], y[:2], ("even", "odd"))


def test_devices_are_refused_where_the_declaration_says_one_process(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="demo_cnn trains in one process, got devices=2") as info:
        TrainingRun(ONE_PROCESS, tmp_path, None, devices=2)
    assert "--devices 1" in info.value.hint
    assert TrainingRun(SEVERAL, tmp_path, None, devices=2).out_dir == tmp_path


def test_native_choices_are_checked_and_kept(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown native topic"):
        TrainingRun(ONE_PROCESS, tmp_path, None, native=["shuffle"])
    run = TrainingRun(ONE_PROCESS, tmp_path, None, native=["order"])
    assert run.native == frozenset({"order"})


def test_init_and_the_recorder_follow_the_arguments(tmp_path: Path) -> None:
    weights = {"w": np.ones(2)}
    shared = TrainingRun(ONE_PROCESS, str(tmp_path), weights, native=["padding"], name="mine")
    loaded: list[object] = []
    shared.initialise("model", lambda model, w: loaded.append((model, w)))
    assert loaded == [("model", weights)] and shared.init == "shared"
    recorder = shared.recorder(ModelSpec(), TrainSpec(batch_size=3), tiny_data(), None, False)
    assert (recorder.framework, recorder.init, recorder.steps) == ("mine", "shared", 3)
    assert recorder.native == frozenset({"padding"}) and recorder.out_dir == tmp_path
    own = TrainingRun(ONE_PROCESS, tmp_path, None)
    own.initialise("model", lambda model, w: loaded.append((model, w)))
    assert len(loaded) == 1 and own.init == "native"
    recorder = own.recorder(ModelSpec(), TrainSpec(), tiny_data(), None, False, steps=7)
    assert (recorder.framework, recorder.init, recorder.steps) == ("demo", "native", 7)


def read_json(path: Path) -> object:
    return json.loads(path.read_text())


def write_checkpoints(out: Path, *contents: str) -> None:
    for epoch, text in enumerate(contents, start=1):
        path = checkpoint_path(out, epoch, ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_resume_skips_a_damaged_checkpoint_with_a_warning(tmp_path: Path, capsys) -> None:
    write_checkpoints(tmp_path, '{"epoch": 1}', "{damaged")
    run = TrainingRun(ONE_PROCESS, tmp_path, None)
    found = run.resume_or_start_clean(True, ".json", read_json)
    assert found == (1, {"epoch": 1})
    err = capsys.readouterr().err
    assert err.startswith("demo_cnn: checkpoint epoch-0002.json is unreadable (JSONDecodeError")
    assert len(list_checkpoints(tmp_path, ".json")) == 2  # a resumed run keeps them


@pytest.mark.parametrize("resume", [False, True])
def test_a_fresh_start_deletes_earlier_checkpoints(tmp_path: Path, resume: bool) -> None:
    write_checkpoints(tmp_path, "{damaged", "{damaged")
    run = TrainingRun(ONE_PROCESS, tmp_path, None)
    assert run.resume_or_start_clean(resume, ".json", read_json) is None
    assert list_checkpoints(tmp_path, ".json") == []
