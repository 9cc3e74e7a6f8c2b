"""cnn_common.files: atomic writes that leave no partial file, the permissions of what they
write, checkpoint names found by number, the fallback past a damaged newest checkpoint, and
the refusal to resume from the checkpoints of another spec."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from cnn_common import files
from cnn_common.errors import UserError
from cnn_common.files import (
    CHECKPOINT_DIR,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_npz,
    check_resumable,
    checkpoint_path,
    list_checkpoints,
    load_latest_checkpoint,
    npz_bytes,
    remove_checkpoints,
)
from cnn_common.spec import ConvBlock, ModelSpec, TrainSpec, spec_to_dict


def names(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- atomic writes


def test_writes_create_the_folder_and_replace_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "record.json"
    atomic_write_json(path, {"loss": float("nan"), "x": [1, 2]})
    text = path.read_text()
    assert "NaN" in text and json.loads(text)["x"] == [1, 2]
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert names(path.parent) == ["record.json"]  # no temporary file left beside it


def test_npz_round_trip(tmp_path: Path) -> None:
    arrays = {"w/conv1": np.arange(6, dtype=np.float32).reshape(2, 3), "t": np.array(3)}
    path = tmp_path / "c.npz"
    atomic_write_npz(path, arrays)
    with np.load(path) as archive:
        assert sorted(archive.files) == sorted(arrays)
        for name, value in arrays.items():
            np.testing.assert_array_equal(archive[name], value)
            assert archive[name].dtype == value.dtype
    assert path.read_bytes() == npz_bytes(arrays)


def _full_disk(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["replace", "write"])
def test_a_full_disk_leaves_the_old_file_and_no_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(b"the previous record")
    if where == "replace":
        monkeypatch.setattr(files.os, "replace", _full_disk)
    else:
        monkeypatch.setattr(files.os, "fsync", _full_disk)  # the data never reached the disk
    with pytest.raises(UserError) as info:
        atomic_write_bytes(path, b"x" * 1000)
    assert str(path) in info.value.message and "no space left" in info.value.message
    assert "1,000 bytes" in info.value.message
    assert "--resume" in info.value.hint
    assert path.read_bytes() == b"the previous record"
    assert names(tmp_path) == ["run.json"]  # the temporary file is gone


def test_other_write_errors_propagate_and_clean_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*args: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files.os, "replace", denied)
    with pytest.raises(PermissionError):
        atomic_write_bytes(tmp_path / "f.bin", b"data")
    assert names(tmp_path) == []


def test_an_interrupted_write_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "f.bin", b"data")
    assert names(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_permissions_of_a_plain_open(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "new.bin", b"data")
        atomic_write_json(tmp_path / "new.json", {})
        with open(tmp_path / "plain.bin", "wb") as handle:
            handle.write(b"data")
    finally:
        os.umask(old)
    for name in ("new.bin", "new.json"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))  # not mkstemp's 0600
        assert mode == stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode)


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_names() -> None:
    assert checkpoint_path("out", 3, ".npz") == Path("out") / CHECKPOINT_DIR / "epoch-0003.npz"
    assert checkpoint_path("out", 12345, ".ckpt").name == "epoch-12345.ckpt"


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_checkpoints_are_found_by_number_and_suffix(tmp_path: Path) -> None:
    for epochs in (9, 10, 2, 100):
        touch(checkpoint_path(tmp_path, epochs, ".npz"))
    folder = tmp_path / CHECKPOINT_DIR
    touch(checkpoint_path(tmp_path, 11, ".keras"))  # another suffix
    touch(folder / "epoch-0012.npz.tmp")
    touch(folder / ".epoch-0013.npz.abc123")  # a temporary file of an atomic write
    touch(folder / "epoch-14.npz")  # fewer than four digits: not one of ours
    touch(folder / "last.npz")
    found = list_checkpoints(tmp_path, ".npz")
    assert [n for n, _ in found] == [2, 9, 10, 100]  # by number: 0010 after 0009, 0100 last
    assert [p.name for _, p in found] == [
        "epoch-0002.npz",
        "epoch-0009.npz",
        "epoch-0010.npz",
        "epoch-0100.npz",
    ]
    assert [n for n, _ in list_checkpoints(tmp_path, ".keras")] == [11]
    assert list_checkpoints(tmp_path / "nothing", ".npz") == []


def test_remove_checkpoints_removes_only_checkpoints(tmp_path: Path) -> None:
    folder = tmp_path / CHECKPOINT_DIR
    touch(checkpoint_path(tmp_path, 1, ".npz"))
    touch(checkpoint_path(tmp_path, 2, ".ckpt"))
    touch(folder / ".epoch-0003.npz.tmp123")
    touch(folder / "notes.txt")
    touch(tmp_path / "run.json")
    remove_checkpoints(tmp_path)
    assert names(folder) == ["notes.txt"]
    assert names(tmp_path) == [CHECKPOINT_DIR, "run.json"]
    remove_checkpoints(tmp_path / "nothing")  # no folder: nothing to do


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_newest_readable_checkpoint_is_loaded(tmp_path: Path) -> None:
    for epochs in (1, 9, 10):
        touch(checkpoint_path(tmp_path, epochs, ".json"), json.dumps({"epochs": epochs}).encode())
    warnings: list[str] = []
    assert load_latest_checkpoint(tmp_path, ".json", read_json, warnings.append) == (
        10,
        {"epochs": 10},
    )
    assert warnings == []
    assert load_latest_checkpoint(tmp_path / "empty", ".json", read_json) is None


def test_a_truncated_newest_checkpoint_falls_back_with_a_warning(tmp_path: Path) -> None:
    arrays = {"w": np.arange(100.0)}
    atomic_write_npz(checkpoint_path(tmp_path, 1, ".npz"), arrays)
    atomic_write_npz(checkpoint_path(tmp_path, 2, ".npz"), {"w": arrays["w"] + 1})
    newest = checkpoint_path(tmp_path, 3, ".npz")
    touch(newest, npz_bytes(arrays)[:200])  # a copy cut short

    def load(path: Path) -> np.ndarray:
        with np.load(path) as archive:
            return archive["w"]

    warnings: list[str] = []
    epochs, value = load_latest_checkpoint(tmp_path, ".npz", load, warnings.append)
    assert epochs == 2
    np.testing.assert_array_equal(value, arrays["w"] + 1)
    (warning,) = warnings
    assert "epoch-0003.npz is unreadable" in warning and "the one before it" in warning
    # no warn callback: the fallback still happens, silently
    assert load_latest_checkpoint(tmp_path, ".npz", load)[0] == 2
    # every checkpoint damaged: none to resume from
    for epochs in (1, 2):
        touch(checkpoint_path(tmp_path, epochs, ".npz"), b"junk")
    warnings.clear()
    assert load_latest_checkpoint(tmp_path, ".npz", load, warnings.append) is None
    assert len(warnings) == 3


def test_a_user_error_from_the_loader_propagates(tmp_path: Path) -> None:
    touch(checkpoint_path(tmp_path, 1, ".npz"))
    touch(checkpoint_path(tmp_path, 2, ".npz"))
    loaded: list[str] = []

    def load(path: Path) -> None:
        loaded.append(path.name)
        raise UserError("a checkpoint of another spec", "start a new run")

    warnings: list[str] = []
    with pytest.raises(UserError, match="another spec"):
        load_latest_checkpoint(tmp_path, ".npz", load, warnings.append)
    assert loaded == ["epoch-0002.npz"] and warnings == []  # not skipped as damaged


# ----------------------------------------------------------------------------- resumable


def test_check_resumable_accepts_another_epochs_count(tmp_path: Path) -> None:
    saved = spec_to_dict(ModelSpec(), TrainSpec(epochs=2))
    check_resumable(saved, spec_to_dict(ModelSpec(), TrainSpec(epochs=5)), tmp_path)
    check_resumable(saved, saved, tmp_path)


@pytest.mark.parametrize(
    ("model", "train", "field"),
    [
        (ModelSpec(), TrainSpec(learning_rate=0.01), "train.learning_rate"),
        (ModelSpec(), TrainSpec(seed=1), "train.seed"),
        (ModelSpec(), TrainSpec(batch_size=64, epochs=9), "train.batch_size"),
        (ModelSpec(num_classes=5), TrainSpec(), "model.num_classes"),
        (ModelSpec(conv=(ConvBlock(filters=8),)), TrainSpec(), "model.conv"),
    ],
)
def test_check_resumable_refuses_any_other_difference_naming_the_field(
    tmp_path: Path, model: ModelSpec, train: TrainSpec, field: str
) -> None:
    saved = spec_to_dict(ModelSpec(), TrainSpec())
    with pytest.raises(UserError) as info:
        check_resumable(saved, spec_to_dict(model, train), tmp_path / CHECKPOINT_DIR)
    message = info.value.message
    where = tmp_path / CHECKPOINT_DIR
    assert message.startswith(f"the checkpoints in {where} belong to a run with another spec")
    assert message.endswith(f"(differs in: {field})"), message
    assert "epochs" not in message  # the epochs count is never a difference
    assert "only --epochs may change" in info.value.hint
