"""cnn_common.recorder: what every trainer does alike while it trains, driven here by hand:
the events and their order, the running means, the epoch records and their timing, the NaN
stop, the files written before ``End``, and the state a checkpoint carries for resume."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest

from cnn_common import recorder as recorder_module
from cnn_common.data import Data
from cnn_common.errors import NonFiniteLossError
from cnn_common.events import End, Epoch, Event, Start, Step
from cnn_common.recorder import RunRecorder
from cnn_common.results import RESULT_FILE, WEIGHTS_FILE, RunResult
from cnn_common.spec import ModelSpec, TrainSpec, spec_to_dict
from cnn_common.weights import init_weights, load_weights, weights_digest

SPEC = ModelSpec()
# per epoch: (loss, correct) of each of the 3 steps of 10 images in batches of 4 (4, 4, 2)
EPOCHS = [
    [(2.0, 1), (1.0, 2), (0.5, 2)],
    [(0.4, 3), (0.3, 4), (0.2, 2)],
    [(0.1, 4), (0.1, 4), (0.1, 2)],
]
BATCHES = [4, 4, 2]


def tiny_data() -> Data:
    """10 training, 4 validation and 6 test images."""
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:
        return rng.random((n, 28, 28, 1), dtype=np.float32)

    labels = np.array([0, 1, 2, 3, 4, 5])
    return Data(
        "mnist",
        images(10),
        np.arange(10) % 10,
        images(4),
        np.arange(4),
        images(6),
        labels,
        tuple("0123456789"),
    )


def make(out: Path, on_event=None, epochs: int = 2, **kwargs) -> RunRecorder:  # noqa: ANN001
    return RunRecorder(
        "numpy",
        SPEC,
        TrainSpec(epochs=epochs, batch_size=4),
        tiny_data(),
        out,
        init="shared",
        on_event=on_event,
        **kwargs,
    )


def train(recorder: RunRecorder, epochs: range) -> None:
    """Send the steps and epoch ends of ``EPOCHS`` for the 0-based ``epochs``."""
    for epoch in epochs:
        recorder.begin_epoch(epoch)
        for (loss, correct), n in zip(EPOCHS[epoch], BATCHES, strict=True):
            recorder.step(np.float32(loss), correct, n)
        recorder.end_epoch(0.1 * (epoch + 1), 0.5 + 0.1 * epoch)


def finish(recorder: RunRecorder, weights: dict[str, np.ndarray]) -> RunResult:
    predictions = np.array([0, 1, 2, 3, 0, 0])  # 4 of the 6 test labels right
    return recorder.finish(
        backend="numpy",
        device="cpu",
        versions={"numpy": np.__version__},
        test_loss=0.75,
        predictions=predictions,
        weights=weights,
        threads=1,
        extra={"note": 1},
    )


def test_events_in_order_and_end_only_after_the_files(tmp_path: Path) -> None:
    events: list[Event] = []
    at_end: list[RunResult] = []

    def listener(event: Event) -> None:
        events.append(event)
        if isinstance(event, End):
            # a listener that sees End can read the record and the weights
            assert (tmp_path / RESULT_FILE).is_file() and (tmp_path / WEIGHTS_FILE).is_file()
            at_end.append(RunResult.from_json(tmp_path / RESULT_FILE))

    start = init_weights(SPEC, 0)
    recorder = make(tmp_path, listener)
    assert recorder.steps == 3  # ceil(10 / 4)
    recorder.start(start)
    train(recorder, range(2))
    assert not (tmp_path / RESULT_FILE).exists()
    final = {name: value + 1 for name, value in start.items()}
    result = finish(recorder, final)
    assert [e.kind for e in events] == ["start", *(["step"] * 3 + ["epoch"]) * 2, "end"]
    assert events[0] == Start(framework="numpy", epochs=2, steps_per_epoch=3, start_epoch=0)
    assert [(e.epoch, e.step, e.steps) for e in events if isinstance(e, Step)] == [
        (1, 1, 3),
        (1, 2, 3),
        (1, 3, 3),
        (2, 1, 3),
        (2, 2, 3),
        (2, 3, 3),
    ]
    assert [e.epoch for e in events if isinstance(e, Epoch)] == [1, 2]
    assert events[-1] == End(test_loss=0.75, test_accuracy=4 / 6)
    (record,) = at_end
    assert record == result
    weights, model, train_spec = load_weights(tmp_path / WEIGHTS_FILE)
    assert model == SPEC and train_spec == TrainSpec(epochs=2, batch_size=4)
    for name, value in final.items():
        np.testing.assert_array_equal(weights[name], value)


def test_running_means_and_epoch_records(tmp_path: Path) -> None:
    events: list[Event] = []
    recorder = make(tmp_path, events.append)
    recorder.start(init_weights(SPEC, 0))
    train(recorder, range(2))
    steps = [e for e in events if isinstance(e, Step)]
    # epoch 1: losses 2.0, 1.0, 0.5 and 1, 2, 2 right of 4, 4, 2 images
    assert [s.loss for s in steps[:3]] == pytest.approx([2.0, 1.5, 3.5 / 3])
    assert [s.accuracy for s in steps[:3]] == pytest.approx([1 / 4, 3 / 8, 5 / 10])
    assert steps[3].loss == pytest.approx(0.4) and steps[3].accuracy == 3 / 4  # a new epoch
    first, second = recorder.history
    assert first.epoch == 1 and second.epoch == 2
    assert first.train_loss == pytest.approx(3.5 / 3) and first.train_accuracy == 0.5
    assert second.train_loss == pytest.approx(0.3) and second.train_accuracy == 0.9
    assert (first.val_loss, first.val_accuracy) == (0.1, 0.5)
    epochs = [e for e in events if isinstance(e, Epoch)]
    assert [vars(r) for r in recorder.history] == [
        {k: getattr(e, k) for k in vars(r)} for r, e in zip(recorder.history, epochs, strict=True)
    ]
    assert recorder.step_losses == pytest.approx([2.0, 1.0, 0.5, 0.4, 0.3, 0.2])
    assert all(type(v) is float for v in recorder.step_losses)


def test_the_record(tmp_path: Path) -> None:
    start = init_weights(SPEC, 3)
    recorder = make(tmp_path)
    recorder.start(start)
    train(recorder, range(2))
    result = finish(recorder, start)
    assert (result.framework, result.backend, result.init) == ("numpy", "numpy", "shared")
    assert result.sizes == {"train": 10, "val": 4, "test": 6}
    assert result.init_digest == weights_digest(start)  # a fresh run records its start
    assert result.extra == {"note": 1}  # no resumed_from_epoch: not resumed
    assert [h.epoch for h in result.history] == [1, 2]
    assert result.step_losses == pytest.approx([2.0, 1.0, 0.5, 0.4, 0.3, 0.2])
    assert result.test_loss == 0.75 and result.test_accuracy == pytest.approx(4 / 6)
    assert result.model_spec == spec_to_dict(SPEC)["model"]
    assert RunResult.from_json(tmp_path / RESULT_FILE) == result


class Clock:
    """Stands for ``time.perf_counter``: returns ``now``, which the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


def test_epoch_time_counts_the_training_steps_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(
        recorder_module, "time", types.SimpleNamespace(perf_counter=clock.perf_counter)
    )
    recorder = make(tmp_path, epochs=1)  # created at 100
    recorder.start(init_weights(SPEC, 0))
    clock.now = 110.0
    recorder.begin_epoch(0)
    for loss, seconds in ((1.0, 112.0), (0.9, 113.5), (0.8, 115.0)):
        clock.now = seconds
        recorder.step(loss, 1, 4)
    clock.now = 160.0  # validation took 45 s
    record = recorder.end_epoch(0.5, 0.5)
    assert record.time_s == 5.0  # 110 -> 115: the steps, not the validation
    clock.now = 170.0
    result = finish(recorder, init_weights(SPEC, 0))
    assert result.wall_time_s == 70.0
    assert result.epoch_times == [5.0] and result.samples_per_s == 10 / 5.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_loss_stops_naming_epoch_and_step(tmp_path: Path, bad: float) -> None:
    events: list[Event] = []
    recorder = make(tmp_path, events.append)
    recorder.start(init_weights(SPEC, 0))
    train(recorder, range(1))
    recorder.begin_epoch(1)
    recorder.step(0.5, 1, 4)
    with pytest.raises(NonFiniteLossError) as info:
        recorder.step(np.float32(bad), 1, 4)
    assert "at epoch 2, step 2" in info.value.message
    assert str(bad) in info.value.message
    assert "learning rate" in info.value.hint
    assert isinstance(events[-1], Step) and events[-1].step == 1  # nothing sent for it
    assert len(recorder.history) == 1


def test_state_and_restore_continue_the_history(tmp_path: Path) -> None:
    start = init_weights(SPEC, 0)
    first = make(tmp_path, epochs=3)
    first.start(start)
    train(first, range(1))
    state = json.loads(json.dumps(first.state()))  # JSON-safe: it goes into a checkpoint
    assert state["spec"] == spec_to_dict(SPEC, TrainSpec(epochs=3, batch_size=4))
    assert state["init"] == "shared" and state["init_digest"] == weights_digest(start)

    events: list[Event] = []
    resumed = make(tmp_path, events.append, epochs=3)
    resumed.restore(state)
    assert resumed.epochs_done == 1
    after_one_epoch = {name: value * 0.5 for name, value in start.items()}
    resumed.start(after_one_epoch)  # the weights the checkpoint held, not the initial ones
    assert events[0] == Start(framework="numpy", epochs=3, steps_per_epoch=3, start_epoch=1)
    train(resumed, range(1, 3))
    result = finish(resumed, after_one_epoch)
    assert [h.epoch for h in result.history] == [1, 2, 3]
    assert result.history[0] == first.history[0]
    assert result.step_losses == pytest.approx([v for epoch in EPOCHS for v, _ in epoch])
    assert result.extra == {"note": 1, "resumed_from_epoch": 1}
    assert result.init_digest == weights_digest(start)  # kept from the fresh run
    assert [e.epoch for e in events if isinstance(e, Epoch)] == [2, 3]


def test_fewer_steps_under_data_parallelism(tmp_path: Path) -> None:
    events: list[Event] = []
    recorder = make(tmp_path, events.append, steps=2)
    recorder.start(init_weights(SPEC, 0))
    assert events[0].steps_per_epoch == 2


def test_progress_prints_the_epoch_and_test_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = make(tmp_path, progress=True)
    recorder.start(init_weights(SPEC, 0))
    train(recorder, range(2))
    finish(recorder, init_weights(SPEC, 0))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("epoch 1/2: loss 1.1667 acc 0.5000 val_loss 0.1000 val_acc 0.5000")
    assert out[1].startswith("epoch 2/2: loss 0.3000 acc 0.9000")
    assert out[2] == "test loss 0.7500 test accuracy 0.6667"
