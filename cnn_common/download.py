"""Checksum-verified download of a dataset's files into the cache.

pooch fetches each ``.gz`` into a temporary file, checks its md5 against the registry's
(``cnn_common.datasets``) and only then renames it into place, so a failed or corrupt
download leaves nothing behind. Mirrors are tried in order for each file.
"""

from __future__ import annotations

import os
from pathlib import Path

from cnn_common.datasets import FILES, DatasetInfo


def cache_dir() -> Path:
    """Where downloads go: ``$CNN_CACHE_DIR`` or ``~/.cache/cnn-rosetta``."""
    env = os.environ.get("CNN_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "cnn-rosetta"


def mirror_urls(info: DatasetInfo, mirrors: tuple[str, ...] | None) -> tuple[str, ...]:
    """The base URLs to try, each ending in ``/``: ``mirrors`` if given, else
    ``$CNN_DATA_MIRRORS`` (comma-separated), else the registry's."""
    env_mirrors = os.environ.get("CNN_DATA_MIRRORS")
    if mirrors is None and env_mirrors:
        mirrors = tuple(m.strip() for m in env_mirrors.split(",") if m.strip())
    return tuple(m if m.endswith("/") else m + "/" for m in (mirrors or info.mirrors))


def download_files(info: DatasetInfo, mirrors: tuple[str, ...]) -> tuple[Path, list[str]]:
    """Fetch the four .gz files into the cache with pooch; return the folder and failures
    (one ``"<url>: <error>"`` per failed attempt)."""
    import pooch

    target = cache_dir() / info.name
    failures: list[str] = []
    for stem in FILES:
        fname = f"{stem}.gz"
        for mirror in mirrors:
            try:
                pooch.retrieve(
                    mirror + fname,
                    known_hash=f"md5:{info.gz_md5[stem]}",
                    fname=fname,
                    path=target,
                    progressbar=False,
                )
                break
            except Exception as exc:  # noqa: BLE001 - network and checksum errors alike
                failures.append(f"{mirror}{fname}: {type(exc).__name__}: {exc}".strip())
        else:
            return target, failures
    return target, failures
