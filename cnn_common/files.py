"""Files every trainer writes: atomic writes, and the checkpoint files of a run.

A run killed at any moment must leave either the old file or the new one, never half of one:
every write goes to a temporary file beside its target, is flushed to disk, then renamed over
it. The temporary file gets the permissions a plain ``open(path, "w")`` would give (``0666``
less the umask), so reports and records can be shared with other users of the machine.

Checkpoints are ``<out_dir>/checkpoints/epoch-NNNN<suffix>``, numbered by finished epochs
(``epoch-0003.npz`` after three epochs), found by number, not by text order. Each framework
chooses what goes inside (NumPy arrays, a Keras variable dump, a Lightning checkpoint); the
names, the discovery and the fallback from a damaged newest file live here once.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from cnn_common.errors import UserError

CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT = re.compile(r"epoch-(\d{4,})(\.[A-Za-z0-9]+)")
T = TypeVar("T")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_shareable(path: str | Path) -> None:
    """Give ``path`` the permissions a plain ``open(path, "w")`` would (``0666`` less the
    umask): a temporary file from ``mkstemp`` is ``0600``, readable by its owner alone."""
    os.chmod(path, 0o666 & ~_umask())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``.

    A full disk (or any other write error) leaves no partial file and raises ``UserError``
    naming the file, so the caller's previous file (a checkpoint, a record) stays intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        make_shareable(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                f"no space left on the device to write {path} ({len(data):,} bytes)",
                "free some disk space (or choose another --out), then rerun with --resume",
            ) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, value: Any) -> None:
    """``value`` as indented JSON (NaN allowed), written atomically."""
    atomic_write_bytes(path, json.dumps(value, indent=1, allow_nan=True).encode())


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of an uncompressed ``.npz`` archive of ``arrays``."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def atomic_write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` of ``arrays``, written atomically."""
    atomic_write_bytes(path, npz_bytes(arrays))


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_path(out_dir: str | Path, epochs_done: int, suffix: str) -> Path:
    """``out_dir/checkpoints/epoch-NNNN<suffix>`` after ``epochs_done`` finished epochs."""
    return Path(out_dir) / CHECKPOINT_DIR / f"epoch-{epochs_done:04d}{suffix}"


def list_checkpoints(out_dir: str | Path, suffix: str) -> list[tuple[int, Path]]:
    """``(epochs_done, path)`` of every checkpoint with ``suffix`` in ``out_dir``, oldest first."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    found = []
    for path in folder.glob(f"epoch-*{suffix}"):
        match = _CHECKPOINT.fullmatch(path.name)
        if match and match.group(2) == suffix:
            found.append((int(match.group(1)), path))
    return sorted(found)


def remove_checkpoints(out_dir: str | Path) -> None:
    """Delete every checkpoint of an earlier run, so a fresh run never resumes from them."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    if folder.is_dir():
        for path in folder.iterdir():
            if _CHECKPOINT.fullmatch(path.name) or path.name.startswith(".epoch-"):
                path.unlink()


def load_latest_checkpoint(
    out_dir: str | Path,
    suffix: str,
    load: Callable[[Path], T],
    warn: Callable[[str], None] | None = None,
) -> tuple[int, T] | None:
    """``(epochs_done, load(path))`` for the newest checkpoint that ``load`` can read.

    A newest file that is truncated or corrupt (a disk that filled up, a copy cut short) is
    skipped for the one before it, and ``warn`` is told which file was skipped and why.
    ``UserError`` from ``load`` (a checkpoint of another spec) is not a damaged file: it
    propagates. None when there is no readable checkpoint.
    """
    for epochs_done, path in reversed(list_checkpoints(out_dir, suffix)):
        try:
            return epochs_done, load(path)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - any read failure means a damaged file
            if warn is not None:
                warn(
                    f"checkpoint {path.name} is unreadable ({type(exc).__name__}: {exc}); "
                    "falling back to the one before it"
                )
    return None


def check_resumable(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    """Refuse to resume a run from checkpoints of another spec.

    ``saved`` and ``current`` are ``spec_to_dict(model, train)`` forms. Only the number of
    epochs may differ: resuming with more epochs extends a finished run.
    """

    def without_epochs(spec: dict[str, Any]) -> dict[str, Any]:
        train = {k: v for k, v in spec.get("train", {}).items() if k != "epochs"}
        return {**spec, "train": train}

    old, new = without_epochs(saved), without_epochs(current)
    if old != new:
        changed = [
            f"{section}.{key}"
            for section in ("model", "train")
            for key in sorted(set(old.get(section, {})) | set(new.get(section, {})))
            if old.get(section, {}).get(key) != new.get(section, {}).get(key)
        ]
        raise UserError(
            f"the checkpoints in {where} belong to a run with another spec "
            f"(differs in: {', '.join(changed)})",
            "resume with the spec the run was started with (only --epochs may change), "
            "or start a new run in another --out",
        )
