"""Bad input to every command: a clear message, exit status 2, no traceback, nothing lost.

One table of cases over ``numpy-cnn``, ``keras-cnn``, ``lightning-cnn``, ``pytorch-cnn`` and
``cnn-compare run | parity | bench | report | ablate | convert``. Each case runs the command
as a user does (the installed entry point, in a process of its own) with ``--out`` pointing at
a folder that already holds files, and checks that the message names the problem and the fix
(``error:`` and ``fix:``, or argparse's own ``error:`` for a malformed flag), that the exit
status is 2, that nothing printed a traceback and that every file of the folder is
byte-for-byte what it was. Most cases fail before a framework is imported, so the table is
fast.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.bad_input_setups import (
    NO_DATA_ENV,
    SMALL,
    Setup,
    compare_results,
    damaged,
    entry_point,
    fewer_labels,
    finished_run,
    garbage_gz,
    in_out,
    label_out_of_range,
    no_data_anywhere,
    numpy_run,
    one_pixel,
    truncated_gz,
    truncated_weights,
    weights_file,
    weights_of_another_spec,
    write,
)

# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    """``command`` (an entry point, then its arguments; ``{out}``, ``{tmp}`` are filled in)
    must fail with every phrase of ``says`` on stderr."""

    id: str
    command: list[str]
    says: tuple[str, ...]
    setup: Setup | None = None
    env: dict[str, str] = field(default_factory=dict)
    argparse: bool = False  # argparse's own error: `usage:` and `error:`, no `fix:`
    data: bool = False  # needs the real MNIST files ($CNN_DATA_DIR)


def trainer(name: str, *args: str) -> list[str]:
    return [name, "train", *args, "--out", "{out}"]


def compare(command: str, *args: str) -> list[str]:
    return ["cnn-compare", command, *args, "--out", "{out}"]


YAML_ERROR = "model:\n  conv:\n    - {filters: 8\n  dense: []\n"  # unclosed mapping, line 4

CASES = [
    # numbers out of range
    Case("numpy-epochs-0", trainer("numpy-cnn", "--epochs", "0"), ("epochs must be",)),
    Case("keras-batch-size-0", trainer("keras-cnn", "--batch-size", "0"), ("batch_size must",)),
    Case("run-seeds-0", compare("run", "--seeds", "0"), ("--seeds must be at least 1",)),
    Case("ablate-seeds-2", compare("ablate", "--seeds", "2"), ("--seeds must be at least 3",)),
    Case("numpy-subset-minus-5", trainer("numpy-cnn", "--subset", "-5"), ("--subset must",)),
    Case("pytorch-subset-minus-5", trainer("pytorch-cnn", "--subset", "-5"), ("--subset must",)),
    Case("keras-subset-0", trainer("keras-cnn", "--subset", "0"), ("got 0",)),
    Case("lightning-subset-0", trainer("lightning-cnn", "--subset", "0"), ("got 0",)),
    Case("run-subset-minus-5", compare("run", "--subset", "-5"), ("--subset must",)),
    Case("ablate-subset-0", compare("ablate", "--subset", "0"), ("--subset must", "got 0")),
    Case("run-eval-subset-0", compare("run", "--eval-subset", "0"), ("--eval-subset must",)),
    Case(
        "pytorch-learning-rate-0",
        trainer("pytorch-cnn", "--set", "learning_rate=0"),
        ("learning_rate must be a number in (0.0, inf), got 0",),
    ),
    Case(
        "run-dropout-1.5",
        compare("run", "--set", "dense.0.dropout=1.5"),
        ("dense[0].dropout must be a number in [0.0, 1.0), got 1.5",),
    ),
    Case(
        "run-weight-decay-minus",
        compare("run", "--set", "train.weight_decay=-0.01"),
        ("weight_decay must be a number in [0.0, inf), got -0.01",),
    ),
    Case(
        "numpy-decay-convention-adamw",
        trainer("numpy-cnn", "--set", "weight_decay_convention=adamw"),
        ("weight_decay_convention must be one of ['l2', 'decoupled'], got 'adamw'",),
    ),
    Case(
        "keras-schedule-linear",
        trainer("keras-cnn", "--set", "lr_schedule=linear"),
        ("lr_schedule must be one of ['constant', 'step', 'cosine']",),
    ),
    Case(
        "lightning-gamma-2",
        trainer("lightning-cnn", "--set", "lr_gamma=2"),
        ("lr_gamma must be a number in (0.0, 1.0), got 2",),
    ),
    Case(
        "pytorch-warmup-minus",
        trainer("pytorch-cnn", "--set", "lr_warmup=-1"),
        ("lr_warmup must be an integer >= 0, got -1",),
    ),
    Case(
        "run-interval-batch",
        compare("run", "--set", "lr_interval=batch", "--set", "weight_decay_on=biases"),
        ("must be one of",),
    ),
    Case("run-threads-0", compare("run", "--threads", "0"), ("--threads must be at least 1",)),
    Case("ablate-threads-0", compare("ablate", "--threads", "0"), ("--threads must be",)),
    Case("bench-threads-0", compare("bench", "--threads", "0"), ("--threads must be",)),
    Case("bench-processes-0", compare("bench", "--processes", "0"), ("--processes must be",)),
    Case("bench-images-0", compare("bench", "--train-images", "0"), ("--train-images must",)),
    Case("parity-steps-0", compare("parity", "--steps", "0"), ("--steps must be at least 1",)),
    Case(
        "numpy-subset-too-large",
        trainer("numpy-cnn", "--subset", "100000"),
        ("asks for more than the 55,000 training images",),
        data=True,
    ),
    Case(
        "numpy-validation-too-large",
        trainer("numpy-cnn", "--set", "validation_size=60000"),
        ("validation_size 60000 must be below the 60000 training images",),
        data=True,
    ),
    # malformed or impossible specs
    Case(
        "yaml-syntax-error",
        trainer("numpy-cnn", "--spec", "{tmp}/bad.yaml"),
        ("is not valid YAML at line 4", "bad.yaml"),
        setup=write("bad.yaml", YAML_ERROR),
    ),
    Case(
        "json-syntax-error",
        compare("parity", "--spec", "{tmp}/bad.json"),
        ("is not valid JSON at line 1",),
        setup=write("bad.json", '{"model": {"conv": [}'),
    ),
    Case(
        "kernel-larger-than-input",
        compare("run", "--spec", "{tmp}/big.yaml"),
        ("a 30x30 kernel does not fit its 28x28 input",),
        setup=write("big.yaml", "model: {conv: [{kernel_size: 30}]}\n"),
    ),
    Case(
        "zero-filters",
        trainer("keras-cnn", "--spec", "{tmp}/zero.yaml"),
        ("conv[0].filters must be an integer >= 1, got 0",),
        setup=write("zero.yaml", "model: {conv: [{filters: 0}]}\n"),
    ),
    Case(
        "set-not-key-value",
        trainer("lightning-cnn", "--set", "epochs"),
        ("override 'epochs' is not key=value",),
    ),
    Case(
        "set-index-out-of-range",
        compare("bench", "--set", "conv.5.filters=8"),
        ("'5' is not an index below 2",),
    ),
    # unknown names
    Case("unknown-framework", compare("run", "--frameworks", "numpy,caffe"), ("'caffe'",)),
    Case(
        "unknown-framework-bench",
        compare("bench", "--frameworks", "tensorflow"),
        ("unknown framework", "numpy, keras"),
    ),
    Case(
        "unknown-dataset",
        trainer("numpy-cnn", "--dataset", "cifar10"),
        ("invalid choice: 'cifar10'",),
        argparse=True,
    ),
    Case(
        "unknown-factor",
        compare("ablate", "--factors", "init,colour"),
        ("unknown factor", "colour"),
    ),
    Case(
        "unknown-activation",
        trainer("numpy-cnn", "--set", "conv.0.activation=swish"),
        ("conv[0].activation must be one of", "'swish'"),
    ),
    Case(
        "spec-field-typo",
        trainer("pytorch-cnn", "--set", "conv.0.filtres=8"),
        ("no field 'filtres'", "did you mean 'filters'?"),
    ),
    Case(
        "unknown-spec-field-in-file",
        compare("run", "--spec", "{tmp}/colour.yaml"),
        ("unknown field", "colour"),
        setup=write("colour.yaml", "model: {colour: red}\n"),
    ),
    Case(
        "unknown-keras-backend",
        trainer("keras-cnn"),
        ("unsupported Keras backend 'numpy'",),
        env={"KERAS_BACKEND": "numpy"},
    ),
    Case(
        "malformed-number", trainer("numpy-cnn", "--epochs", "two"), ("invalid int",), argparse=True
    ),
    Case("unknown-init", compare("run", "--init", "random"), ("invalid choice",), argparse=True),
    Case(
        "run-seeds-auto-2",
        compare("run", "--seeds", "auto:2"),
        ("auto:MAX needs MAX of at least 3",),
        argparse=True,
    ),
    Case("run-seeds-many", compare("run", "--seeds", "many"), ("auto:MAX, got",), argparse=True),
    Case("run-margin-negative", compare("run", "--margin", "accuracy=-1"), ("must be a positive",)),
    Case("ablate-margin-name", compare("ablate", "--margin", "acc=1"), ("cannot read 'acc=1'",)),
    Case(
        "report-margin-number",
        ["cnn-compare", "report", "{out}", "--margin", "loss=x"],
        ("loss='x' is not a number",),
    ),
    # paths that are missing, unreadable or of the wrong kind
    Case(
        "spec-is-a-folder",
        trainer("numpy-cnn", "--spec", "{tmp}"),
        ("is a folder, not a file",),
    ),
    Case(
        "spec-missing",
        compare("ablate", "--spec", "{tmp}/missing.yaml"),
        ("cannot read spec file", "missing.yaml"),
    ),
    Case(
        "spec-not-text",
        trainer("lightning-cnn", "--spec", "{tmp}/binary.yaml"),
        ("cannot read spec file", "binary.yaml"),
        setup=write("binary.yaml", bytes(range(128, 256))),
    ),
    Case(
        "data-dir-is-a-file",
        trainer("numpy-cnn", "--data-dir", "{tmp}/bad.yaml"),
        ("--data-dir", "is not a folder"),
        setup=write("bad.yaml", YAML_ERROR),
    ),
    Case(
        "data-dir-missing",
        compare("run", "--data-dir", "{tmp}/nothere"),
        ("--data-dir", "does not exist"),
    ),
    Case(
        "no-data-anywhere",
        trainer("pytorch-cnn", "--data-dir", "{tmp}/empty"),
        ("dataset 'mnist' not found", "CNN_DATA_DIR"),
        setup=no_data_anywhere,
        env=NO_DATA_ENV,
    ),
    Case(
        "run-out-is-a-file",
        ["cnn-compare", "run", "--out", "{out}/notes.txt"],
        ("is a file, not a folder",),
        data=True,
    ),
    Case(
        "parity-out-is-a-file",
        ["cnn-compare", "parity", "--frameworks", "numpy", "--out", "{out}/notes.txt"],
        ("is a file, not a folder",),
    ),
    Case(
        "bench-out-is-a-file",
        ["cnn-compare", "bench", "--frameworks", "numpy", "--out", "{out}/notes.txt"],
        ("is a file, not a folder",),
    ),
    Case(
        "trainer-out-is-a-file",
        ["numpy-cnn", "train", *SMALL, "--out", "{out}/notes.txt"],
        ("is a file, not a folder",),
        data=True,
    ),
    # corrupt, truncated or mismatched data files
    Case(
        "data-truncated-gz",
        trainer("numpy-cnn", "--data-dir", "{tmp}/data"),
        ("train-images-idx3-ubyte.gz is truncated",),
        setup=truncated_gz,
        data=True,
    ),
    Case(
        "data-not-gzip",
        compare("run", "--data-dir", "{tmp}/data"),
        ("t10k-labels-idx1-ubyte.gz is not a readable gzip file",),
        setup=garbage_gz,
        data=True,
    ),
    Case(
        "data-count-mismatch",
        trainer("keras-cnn", "--data-dir", "{tmp}/data"),
        ("mnist test: 10,000 images but 9,990 labels",),
        setup=damaged("t10k-labels-idx1-ubyte", fewer_labels),
        data=True,
    ),
    Case(
        "data-label-out-of-range",
        compare("ablate", "--data-dir", "{tmp}/data"),
        ("label 12 at index 5 is not a class of mnist (0 to 9)",),
        setup=damaged("t10k-labels-idx1-ubyte", label_out_of_range),
        data=True,
    ),
    Case(
        "data-checksum",
        trainer("lightning-cnn", "--data-dir", "{tmp}/data"),
        ("train-images-idx3-ubyte.gz fails its checksum",),
        setup=damaged("train-images-idx3-ubyte", one_pixel),
        data=True,
    ),
    # weight files: truncated, not safetensors, of another spec
    Case(
        "weights-truncated",
        compare("convert", "{tmp}/w.safetensors"),
        ("is not a readable safetensors weight file",),
        setup=truncated_weights,
    ),
    Case(
        "weights-not-safetensors",
        compare("convert", "{tmp}/w.safetensors"),
        ("is not a readable safetensors weight file",),
        setup=write("w.safetensors", "model weights\n"),
    ),
    Case(
        "weights-of-another-spec",
        compare("convert", "{tmp}/w.safetensors"),
        ("conv1.kernel",),
        setup=weights_of_another_spec,
    ),
    Case(
        "resume-checkpoints-of-another-spec",
        trainer("numpy-cnn", *SMALL, "--resume", "--set", "conv.0.filters=8"),
        ("belong to a run with another spec", "model.conv"),
        setup=numpy_run,
        data=True,
    ),
    # --init-from: a missing run, a run of another spec
    Case(
        "run-init-from-missing",
        compare("run", "--init-from", "{tmp}/nothere"),
        ("--init-from", "nothere: no such run folder or weight file"),
    ),
    Case(
        "numpy-init-from-another-spec",
        trainer("numpy-cnn", "--init-from", "{tmp}/good.safetensors", "--set", "conv.0.filters=8"),
        ("conv1.kernel: the run's (5, 5, 1, 16), this spec's (5, 5, 1, 8)",),
        setup=weights_file,
    ),
    # a folder that already holds results
    *(
        Case(
            f"{name.split('-')[0]}-out-holds-a-run",
            trainer(name),
            ("already holds a finished run", "--resume", "--overwrite"),
            setup=finished_run,
        )
        for name in ("numpy-cnn", "keras-cnn", "lightning-cnn", "pytorch-cnn")
    ),
    Case(
        "run-out-holds-results",
        compare("run", "--frameworks", "numpy", *SMALL),
        ("already holds results", "--resume"),
        setup=compare_results,
        data=True,
    ),
    Case(
        "run-resume-with-flags",
        compare("run", "--resume", "--epochs", "2"),
        ("--resume takes its configuration from", "--epochs"),
        setup=compare_results,
    ),
    Case(
        "parity-out-holds-a-result",
        compare("parity", "--frameworks", "numpy"),
        ("already holds a parity result", "--overwrite"),
        setup=in_out("parity.json", "{}\n"),
    ),
    Case(
        "bench-out-holds-a-result",
        compare("bench", "--frameworks", "numpy"),
        ("already holds a bench result", "--overwrite"),
        setup=in_out("bench.json", "{}\n"),
    ),
    # results folders that are not one
    Case("report-not-results", ["cnn-compare", "report", "{out}"], ("not a results folder",)),
    Case("report-missing", ["cnn-compare", "report", "{tmp}/nothere"], ("is not a folder",)),
    Case(
        "report-damaged-record",
        ["cnn-compare", "report", "{out}"],
        ("is not a readable run record",),
        setup=compare_results,
    ),
]


def fill(text: str, tmp: Path, out: Path) -> str:
    return text.replace("{tmp}", str(tmp)).replace("{out}", str(out))


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_cleanly(
    case: Case, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data = request.getfixturevalue("data_dir") if case.data else None
    out = tmp_path / "out"
    (out / "keep").mkdir(parents=True)
    (out / "notes.txt").write_text("results of an earlier day\n")
    (out / "keep" / "model.bin").write_bytes(bytes(range(256)))
    if case.setup is not None:
        case.setup(tmp_path, out, data)
    before = digest(out)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.update({key: fill(value, tmp_path, out) for key, value in case.env.items()})
    name, *args = case.command
    result = subprocess.run(
        [*entry_point(name), *(fill(arg, tmp_path, out) for arg in args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    shown = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 2, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert f"{name}" in result.stderr and "error:" in result.stderr, shown
    if case.argparse:
        assert "usage:" in result.stderr, shown
    else:
        assert "\n  fix: " in result.stderr, shown
    for phrase in case.says:
        assert phrase in result.stderr, (phrase, shown)
    assert digest(out) == before, "the output folder changed"


def test_the_table_covers_every_command_with_30_distinct_cases() -> None:
    ids = [case.id for case in CASES]
    assert len(set(ids)) == len(ids)
    commands = {tuple(case.command[:2]) for case in CASES}
    for name in ("numpy-cnn", "keras-cnn", "lightning-cnn", "pytorch-cnn"):
        assert (name, "train") in commands, name
    for command in ("run", "parity", "bench", "report", "ablate", "convert"):
        assert ("cnn-compare", command) in commands, command
    print(f"\n{len(CASES)} distinct bad inputs over {len(commands)} commands")
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    "command",
    [
        ["numpy-cnn"],
        ["numpy-cnn", "train"],
        ["keras-cnn", "train"],
        ["lightning-cnn"],
        ["pytorch-cnn", "train"],
        ["cnn-compare"],
        *(["cnn-compare", name] for name in ("run", "parity", "bench", "report", "ablate")),
    ],
    ids=" ".join,
)
def test_help_documents_the_exit_statuses(command: list[str]) -> None:
    name, *args = command
    result = subprocess.run(
        [*entry_point(name), *args, "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for part in ("exit status:", "0 done", "1 a run failed", "2 a user error", "130 interrupted"):
        assert part in text, text[-400:]
