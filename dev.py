"""Set up and run cnn-rosetta with nothing but Python: ``python3 dev.py run | test | lint``.

Each command creates the virtual environment ``.venv`` when it is missing (or when
``pyproject.toml`` changed since it was made), installs the project with every framework,
then runs:

- ``run``: ``cnn-compare run`` (extra arguments go to it: ``python3 dev.py run --epochs 1``);
- ``test``: the test suite (extra arguments go to pytest: ``python3 dev.py test -m "not slow"``);
- ``lint``: ``ruff check`` and ``ruff format --check``.

PyTorch is installed first, alone, so that the framework extras find it and pull no second
build; ``TORCH_SPEC`` names another (``TORCH_SPEC="torch --index-url
https://download.pytorch.org/whl/cpu"`` for the CPU build from PyTorch's own index). The data
come from ``CNN_DATA_DIR`` when it is set (a folder holding ``mnist/``), else from the cache,
else they are downloaded (about 11 MB).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".installed"  # the pyproject.toml digest the environment was installed from
TORCH_SPEC = os.environ.get("TORCH_SPEC", "torch==2.13.0")


def _bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def _call(*command: str | Path) -> None:
    print("+", shlex.join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], cwd=ROOT, check=True)


def ensure_environment() -> None:
    """Create and install ``.venv`` unless it is there for this ``pyproject.toml``."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.is_file() and STAMP.read_text().strip() == digest:
        return
    if not _bin("python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = (_bin("python"), "-m", "pip")
    _call(*pip, "install", "--quiet", "--upgrade", "pip")
    _call(*pip, "install", "--quiet", *shlex.split(TORCH_SPEC))
    _call(*pip, "install", "--quiet", "-e", ".[all,test]")
    _call(*pip, "check")
    STAMP.write_text(digest + "\n")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "lint"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_environment()
    try:
        if command == "run":
            _call(_bin("cnn-compare"), "run", *rest)
        elif command == "test":
            _call(_bin("python"), "-m", "pytest", *rest)
        else:
            _call(_bin("ruff"), "check", ".")
            _call(_bin("ruff"), "format", "--check", ".")
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
