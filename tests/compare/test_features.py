"""A command is a plug-in: a package a third party installs adds a command to ``cnn-compare``,
with its job type run in a worker process, and nothing in compare changes
(``compare.engine.features``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compare.engine import features
from tests.compare.plugins import child_env, write_feature

REPO = Path(__file__).resolve().parents[2]

# A command that sends one job to a worker process; the worker writes its own pid and the
# greeting, so the test sees that the job ran in another process, by the plug-in's handler.
HELLO = {
    "__init__.py": """
        from compare.engine.features import Feature
        from hello_feature.job import HelloJob

        FEATURE = Feature(
            name="hello",
            help="greet from a worker process",
            command="hello_feature.command",
            jobs={HelloJob: "hello_feature.task:greet"},
            order=500,
        )
    """,
    "job.py": """
        from dataclasses import dataclass
        from typing import ClassVar

        from compare.engine.jobs import Job

        @dataclass(frozen=True, kw_only=True)
        class HelloJob(Job):
            kind: ClassVar[str] = "hello"
            greeting: str
    """,
    "task.py": """
        import os

        def greet(job, on_event=None):
            (job.path / "hello.txt").write_text(f"{job.greeting} from {os.getpid()}")
    """,
    "command.py": """
        from pathlib import Path

        from cnn_common.spec import ModelSpec, TrainSpec
        from compare.engine.launch import run_checked
        from hello_feature.job import HelloJob

        def configure(parser):
            parser.description = "Greet from a worker process."
            parser.add_argument("--out", type=Path, required=True)
            parser.add_argument("--greeting", default="hello")

        def main(args):
            job = HelloJob.create(
                model_spec=ModelSpec(),
                train_spec=TrainSpec(),
                out=args.out / "job",
                framework="numpy",
                greeting=args.greeting,
            )
            run_checked(job)
            print((job.path / "hello.txt").read_text())
            return 0
    """,
}


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    return write_feature(tmp_path / "site", name="hello", package="hello_feature", modules=HELLO)


def compare(root: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "compare", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=child_env(root), cwd=REPO, timeout=300
    )


def test_the_plugin_command_is_listed(plugin: Path) -> None:
    result = compare(plugin, "--help")
    assert result.returncode == 0, result.stderr
    assert "hello" in result.stdout and "greet from a worker process" in result.stdout
    assert "--greeting" in compare(plugin, "hello", "--help").stdout


def test_the_plugin_command_runs_its_job_in_a_worker(plugin: Path, tmp_path: Path) -> None:
    result = compare(plugin, "hello", "--out", str(tmp_path / "out"), "--greeting", "hi")
    assert result.returncode == 0, result.stdout + result.stderr
    greeting, _, pid = (tmp_path / "out" / "job" / "hello.txt").read_text().partition(" from ")
    assert greeting == "hi" and int(pid) != os.getpid()
    assert result.stdout.strip() == f"hi from {pid}"


def test_the_plugin_job_type_and_handler_are_found(
    plugin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(plugin))
    features.features.cache_clear()
    features.job_types.cache_clear()
    try:
        assert "hello" in features.features() and "hello" in features.job_types()
        assert features.handler("hello").__module__ == "hello_feature.task"
        job = features.job_types()["hello"](
            framework="numpy", out="x", model_spec={}, train_spec={}, greeting="hey"
        )
        assert features.job_from_json(job.to_json()) == job
    finally:
        features.features.cache_clear()
        features.job_types.cache_clear()


def test_every_project_command_and_job_is_registered() -> None:
    names = [feature.name for feature in features.commands()]
    assert names == ["run", "parity", "bench", "ablate", "rosetta", "report", "convert", "serve"]
    kinds = set(features.job_types())
    assert kinds == {"batch", "train", "parity", "bench", "crosseval", "convert", "rosetta"}
