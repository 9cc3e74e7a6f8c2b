"""cnn_common.results and cnn_common.metrics: the run record and the numbers computed from
predictions, against a small example worked by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cnn_common.errors import NonFiniteLossError
from cnn_common.metrics import accuracy, classification_report, confusion_matrix
from cnn_common.results import (
    RESULT_FILE,
    EpochRecord,
    RunResult,
    check_finite_loss,
    finish_result,
    package_versions,
)
from cnn_common.spec import ModelSpec, TrainSpec, spec_to_dict

# 7 test images, 3 classes. Rows true class, columns predicted:
#   true 0: [0, 1]       -> predicted 0, 1
#   true 1: [1, 1]       -> predicted 1, 1
#   true 2: [2, 0, 2]    -> predicted 2, 0, 2
Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0, 2])
CM = [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
# precision = tp / column sum, recall = tp / row sum, f1 = 2pr / (p + r)
PRECISION = [1 / 2, 2 / 3, 2 / 2]
RECALL = [1 / 2, 2 / 2, 2 / 3]
F1 = [0.5, 2 * (2 / 3) / (5 / 3), 2 * (2 / 3) / (5 / 3)]  # 0.5, 0.8, 0.8
SUPPORT = [2, 2, 3]


# ----------------------------------------------------------------------------- metrics


def test_accuracy_is_micro_averaged() -> None:
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 7, abs=1e-15)
    # the macro average (mean per-class recall) would be (1/2 + 1 + 2/3) / 3 = 0.722...
    assert accuracy(Y_TRUE, Y_PRED) != pytest.approx(np.mean(RECALL))
    assert accuracy(np.array([], dtype=np.int64), np.array([], dtype=np.int64)) == 0.0


def test_confusion_matrix_by_hand() -> None:
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.dtype == np.int64 and cm.tolist() == CM
    assert confusion_matrix(Y_TRUE, Y_PRED, 5).tolist() == [
        [1, 1, 0, 0, 0],
        [0, 2, 0, 0, 0],
        [1, 0, 2, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]


def test_classification_report_by_hand() -> None:
    report = classification_report(np.array(CM), ["a", "b", "c"])
    assert list(report) == ["a", "b", "c", "macro avg", "weighted avg"]
    for i, name in enumerate("abc"):
        assert report[name]["precision"] == pytest.approx(PRECISION[i], abs=1e-12)
        assert report[name]["recall"] == pytest.approx(RECALL[i], abs=1e-12)
        assert report[name]["f1"] == pytest.approx(F1[i], abs=1e-12)
        assert report[name]["support"] == SUPPORT[i]
    macro = report["macro avg"]
    assert macro["precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3, abs=1e-12)  # 0.7222
    assert macro["recall"] == pytest.approx((0.5 + 1 + 2 / 3) / 3, abs=1e-12)
    assert macro["f1"] == pytest.approx((0.5 + 0.8 + 0.8) / 3, abs=1e-12)  # 0.7
    weighted = report["weighted avg"]  # weights = support / 7
    assert weighted["precision"] == pytest.approx((2 * 0.5 + 2 * 2 / 3 + 3 * 1) / 7, abs=1e-12)
    assert weighted["recall"] == pytest.approx(5 / 7, abs=1e-12)  # = accuracy, always
    assert weighted["f1"] == pytest.approx((2 * 0.5 + 2 * 0.8 + 3 * 0.8) / 7, abs=1e-12)
    assert macro["support"] == weighted["support"] == 7


def test_report_zero_where_undefined() -> None:
    # class 2 is never predicted (precision 0/0) and class 1 never occurs (recall 0/0)
    cm = confusion_matrix(np.array([0, 0, 2]), np.array([0, 1, 0]), 3)
    report = classification_report(cm)
    assert list(report)[:3] == ["0", "1", "2"]
    assert report["2"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["1"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # class 0: 1 of its 2 images found, 1 of the 2 predictions of 0 right
    assert report["0"]["precision"] == 0.5 and report["0"]["recall"] == 0.5
    assert all(math.isfinite(v) for row in report.values() for v in row.values())


# ----------------------------------------------------------------------------- the run record


def history() -> list[EpochRecord]:
    return [
        EpochRecord(1, 0.9, 0.7, 0.5, 0.85, 4.0),
        EpochRecord(2, 0.4, 0.88, 0.3, 0.9, 2.0),
        EpochRecord(3, 0.25, 0.92, 0.2, 0.93, 3.0),
    ]


@pytest.fixture()
def finished() -> RunResult:
    return finish_result(
        framework="numpy",
        backend="numpy",
        device="cpu",
        versions={"python": "3.11", "numpy": "2.0"},
        dataset="mnist",
        class_names=("a", "b", "c"),
        model_spec=ModelSpec(num_classes=3),
        train_spec=TrainSpec(epochs=3),
        init="shared",
        history=history(),
        step_losses=[np.float32(1.5), 1.0, np.float64(0.5)],
        test_loss=np.float64(0.21),
        y_test=Y_TRUE,
        y_pred=Y_PRED,
        n_train=55_000,
        n_val=5_000,
        init_digest="0123456789abcdef",
        wall_time_s=12.5,
        extra={"threads": 2},
    )


def test_finish_result_computes_the_numbers_once(finished: RunResult) -> None:
    assert finished.confusion_matrix == CM
    assert finished.test_accuracy == pytest.approx(5 / 7, abs=1e-15)
    assert finished.class_report == classification_report(np.array(CM), ["a", "b", "c"])
    assert finished.class_report["b"]["f1"] == pytest.approx(0.8)
    assert finished.predictions == Y_PRED.tolist()
    assert all(type(p) is int for p in finished.predictions)
    assert finished.step_losses == [1.5, 1.0, 0.5]
    assert all(type(v) is float for v in finished.step_losses)
    assert type(finished.test_loss) is float and finished.test_loss == 0.21
    assert finished.epoch_times == [4.0, 2.0, 3.0]
    assert finished.samples_per_s == pytest.approx(55_000 / 3.0)  # the median epoch
    assert finished.param_count == 46_730 - 650 + (64 * 3 + 3)
    assert finished.model_spec == spec_to_dict(ModelSpec(num_classes=3))["model"]
    assert finished.train_spec["epochs"] == 3 and finished.init == "shared"
    assert finished.class_names == ["a", "b", "c"] and finished.extra == {"threads": 2}
    assert finished.peak_memory_mb > 1.0  # this process holds more than 1 MiB
    assert finished.status == "ok" and finished.schema == 1
    assert finished.sizes == {"train": 55_000, "val": 5_000, "test": 7}  # test: len(y_test)
    assert finished.init_digest == "0123456789abcdef"
    assert finished.wall_time_s == 12.5


def test_a_record_without_the_new_fields_still_reads(tmp_path) -> None:
    # records written before sizes and init_digest existed take their defaults
    result = RunResult("numpy", "numpy", "mnist", {}, {}, "shared", "cpu", {}, 0)
    data = result.to_dict()
    del data["sizes"], data["init_digest"]
    back = RunResult.from_dict(data)
    assert back.sizes == {} and back.init_digest == ""


def test_run_result_json_round_trip(tmp_path, finished: RunResult) -> None:
    path = tmp_path / "out" / RESULT_FILE
    finished.to_json(path)
    assert [p.name for p in path.parent.iterdir()] == [RESULT_FILE]  # written atomically
    back = RunResult.from_json(path)
    assert back == finished
    assert all(isinstance(h, EpochRecord) for h in back.history)
    data = json.loads(path.read_text())
    assert data["history"][1] == {
        "epoch": 2,
        "train_loss": 0.4,
        "train_accuracy": 0.88,
        "val_loss": 0.3,
        "val_accuracy": 0.9,
        "time_s": 2.0,
    }


def test_run_result_with_nan_and_unknown_keys(tmp_path) -> None:
    # a failed run keeps NaN losses; a newer record's extra keys are ignored, not fatal
    result = RunResult("keras", "tensorflow", "mnist", {}, {}, "native", "cpu", {}, 0)
    result.status, result.error = "failed", "the training loss became nan"
    path = tmp_path / RESULT_FILE
    result.to_json(path)
    data = json.loads(path.read_text())
    data["added_later"] = 1
    back = RunResult.from_dict(data)
    assert math.isnan(back.test_loss) and back.status == "failed"
    assert back.to_dict() | {"test_loss": 0, "test_accuracy": 0} == result.to_dict() | {
        "test_loss": 0,
        "test_accuracy": 0,
    }


def test_check_finite_loss() -> None:
    check_finite_loss(0.5, epoch=1, step=0)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(NonFiniteLossError) as info:
            check_finite_loss(bad, epoch=2, step=17)
        assert "epoch 2, step 17" in info.value.message and "learning" in info.value.hint


def test_package_versions() -> None:
    versions = package_versions(["numpy", "no-such-package-here"])
    assert set(versions) == {"python", "numpy"}
    assert versions["numpy"] == np.__version__
