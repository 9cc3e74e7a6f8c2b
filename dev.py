"""Set up and run cnn-rosetta with nothing but Python: ``python3 dev.py run | test | lint``.

Each command creates the virtual environment ``.venv`` when it is missing (or when
``pyproject.toml`` changed since it was made), installs the project with every framework,
then runs:

- ``run``: ``cnn-compare run`` (extra arguments go to it: ``python3 dev.py run --epochs 1``);
- ``test``: the test suite (extra arguments go to pytest: ``python3 dev.py test -m "not slow"``),
  in two passes: the tests two at a time (pytest-xdist, a file per worker), then those marked
  ``idle``, which measure the machine and need it to themselves, one by one. Give ``-n`` to
  choose the workers yourself (``-n 0``: one pass, one by one);
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
import random
import shlex
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".installed"  # the pyproject.toml digest the environment was installed from
TORCH_SPEC = os.environ.get("TORCH_SPEC", "torch==2.13.0")
# Two test processes side by side: most tests wait on Python, imports or a child process, so
# two of them fill two cores (a full run: 1,254 s against 2,009 s one by one, 2-core EPYC).
TEST_WORKERS = "2"
TEST_MARKS = "not grid"  # pyproject.toml's addopts say the same for a plain `pytest`


def _bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def _call(*command: str | Path, check: bool = True) -> int:
    """Show ``command``, run it in the repository; its exit status (raises if ``check``)."""
    print("+", shlex.join(str(c) for c in command), flush=True)
    return subprocess.run([str(c) for c in command], cwd=ROOT, check=check).returncode


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


def _marks(rest: list[str]) -> tuple[str, list[str]]:
    """The ``-m`` expression among pytest's arguments (the default without one), and the rest."""
    marks, others, args = TEST_MARKS, [], iter(rest)
    for arg in args:
        if arg == "-m":
            marks = next(args, TEST_MARKS)
        elif arg.startswith("-m") and not arg.startswith("--"):
            marks = arg[2:]
        else:
            others.append(arg)
    return marks, others


def run_tests(rest: list[str]) -> int:
    """The tests in parallel, then the ``idle`` ones alone; the worse exit status of the two."""
    pytest = (_bin("python"), "-m", "pytest")
    if any(a.startswith(("-n", "--numprocesses")) for a in rest):
        return _call(*pytest, *rest, check=False)
    marks, rest = _marks(rest)
    if "--random-order" in rest and not any(a.startswith("--random-order-seed") for a in rest):
        # every worker must collect the same order, so they share one seed
        rest.append(f"--random-order-seed={random.randrange(1_000_000)}")
    passes = [
        ("-n", TEST_WORKERS, "--dist", "loadfile", "-m", f"({marks}) and not idle", *rest),
        ("-m", f"({marks}) and idle", *rest),
    ]
    codes = []
    for args in passes:
        codes.append(_call(*pytest, *args, check=False))
        if codes[-1] not in (0, 1, 5):
            return codes[-1]  # interrupted, or pytest refused its arguments: no second pass
    if all(code == 5 for code in codes):
        return 5  # pytest's "no tests collected"
    return max((code for code in codes if code != 5), default=0)


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
            return run_tests(rest)
        else:
            _call(_bin("ruff"), "check", ".")
            _call(_bin("ruff"), "format", "--check", ".")
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
