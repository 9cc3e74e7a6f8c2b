"""The GPU checks of every framework in one go: TensorFloat-32 and deterministic kernels.

For each framework that trains on a GPU (PyTorch, Lightning, Keras on TensorFlow, torch and
jax), in a process of its own:

1. **The TF32 switch** (``cnn_common.gpu``'s setter of the framework's library): a float32
   convolution and matrix multiply, with each ``tf32`` mode the library can take, against the
   float64 product of the same inputs. ``off`` must stay within float32's error; a mode that
   allows TF32 for the operation must show TF32's (inputs rounded to 10 mantissa bits).
2. **Deterministic training**: the framework's own ``train`` on ``--spec`` and a subset,
   twice with ``deterministic: true``: the final weights must be bit-identical. Then twice
   with ``deterministic: false`` (the libraries' own setting): whether they differ is
   reported, not required (nondeterministic kernels may happen to agree).
3. **What TF32 does to a run**: the same training with the framework's own ``tf32`` against
   ``off``: the largest weight difference and the test accuracy of each (reported).

keras-jax's determinism is fixed when its process starts (``XLA_FLAGS``), so its
``deterministic: false`` runs get a process of their own. Exit status 1 when a check fails.
``--device cpu`` runs the same steps on the CPU, where the switches change nothing and the
kernels are deterministic: it checks the script, not a GPU.

    python benchmarks/gpu_checks.py --out gpu-checks      # on a machine with a GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.data import training_data
from cnn_common.errors import UserError, run_cli
from cnn_common.gpu import GPU_CONVENTIONS, SETTERS, XLA_FLAG, gpu_here
from cnn_common.spec_files import load_spec
from cnn_common.weights import init_weights, load_weights
from compare.engine import registry
from compare.engine.launch import child_env as worker_env
from numpy_cnn.ops import conv2d_forward

FRAMEWORKS = ("pytorch", "lightning", "keras", "keras-torch", "keras-jax")
LIBRARY = {  # the library that computes each framework's layers
    "pytorch": "torch",
    "lightning": "torch",
    "keras": "tensorflow",
    "keras-torch": "torch",
    "keras-jax": "jax",
}
MODES = {"torch": ("off", "conv", "all"), "tensorflow": ("off", "all"), "jax": ("off", "all")}
FLOAT32_ERROR = 2e-5  # relative error a float32 product of these sizes stays under
TF32_ERROR = 1e-4  # TF32's rounding shows well above this
REPO = Path(__file__).resolve().parents[1]


def probe_inputs() -> tuple[np.ndarray, ...]:
    """A (64, 1024) x (1024, 64) product and a 3x3 convolution of 64 channels on a 16x16 map:
    ``(a, b, images NHWC, kernel HWCF)``, float32, from a fixed seed."""
    rng = np.random.default_rng(0)
    return (
        rng.standard_normal((64, 1024), dtype=np.float32),
        rng.standard_normal((1024, 64), dtype=np.float32),
        rng.standard_normal((8, 16, 16, 64), dtype=np.float32),
        rng.standard_normal((3, 3, 64, 64), dtype=np.float32),
    )


def reference(a: np.ndarray, b: np.ndarray, x: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, ...]:
    """The float64 matmul and 'valid' convolution (NumPy's own layer) of the probe's inputs."""
    a, b, x, k = (v.astype(np.float64) for v in (a, b, x, k))
    conv, _ = conv2d_forward(x, k, np.zeros(k.shape[-1]))  # (N, H', W', F)
    return a @ b, conv


def library_products(library: str, device: str, inputs: tuple[np.ndarray, ...]) -> tuple:
    """The probe's matmul and convolution computed by ``library`` on ``device``, as NumPy."""
    a, b, x, k = inputs
    if library == "torch":
        import torch

        where = "cuda" if device == "gpu" else "cpu"
        ta, tb = torch.from_numpy(a).to(where), torch.from_numpy(b).to(where)
        tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(where)  # NCHW
        tk = torch.from_numpy(k).permute(3, 2, 0, 1).contiguous().to(where)  # (F, C, KH, KW)
        conv = torch.nn.functional.conv2d(tx, tk).permute(0, 2, 3, 1)
        return (ta @ tb).cpu().numpy(), conv.cpu().numpy()
    if library == "tensorflow":
        import tensorflow as tf

        with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
            conv = tf.nn.conv2d(x, k, strides=1, padding="VALID")
            return tf.linalg.matmul(a, b).numpy(), conv.numpy()
    import jax

    place = jax.devices("gpu" if device == "gpu" else "cpu")[0]
    ja, jb, jx, jk = (jax.device_put(v, place) for v in (a, b, x, k))
    conv = jax.lax.conv_general_dilated(
        jx, jk, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return np.asarray(ja @ jb), np.asarray(conv)


def relative_error(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.max(np.abs(found - exact)) / np.max(np.abs(exact)))


def check_switch(framework: str, device: str, train: Any) -> list[dict[str, Any]]:
    """Step 1: each TF32 mode's error on the probe, and whether it is what the mode says."""
    library = LIBRARY[framework]
    inputs = probe_inputs()
    exact = reference(*inputs)
    rows = []
    for mode in MODES[library]:
        SETTERS[library](dataclasses.replace(train, tf32=mode))
        found = library_products(library, device, inputs)
        for op, result, want in zip(("matmul", "conv"), found, exact, strict=True):
            error = relative_error(result, want)
            rounded = device == "gpu" and (mode == "all" or (mode == "conv" and op == "conv"))
            ok = error > TF32_ERROR if rounded else error < FLOAT32_ERROR
            rows.append(
                {"tf32": mode, "op": op, "error": error, "tf32_expected": rounded, "ok": ok}
            )
    return rows


def train_once(
    pkg: Any, framework: str, model: Any, train: Any, data: Any, device: str, folder: Path
) -> dict:
    """One run of the framework's own ``train`` from the shared initial weights."""
    start = time.perf_counter()
    result = pkg.train(
        model, train, data, folder, init_weights(model, train.seed, train.dtype),
        device=device, progress=False, name=framework,
    )  # fmt: skip
    weights, _, _ = load_weights(folder / "weights.safetensors")
    return {"weights": weights, "accuracy": result.test_accuracy, "s": time.perf_counter() - start}


def largest_difference(first: dict, second: dict) -> float:
    return max(float(np.max(np.abs(first[k] - second[k]))) for k in first)


def check_framework(args: argparse.Namespace) -> dict[str, Any]:
    """Steps 1 to 3 for ``args.one`` in this process (``args.deterministic``: which runs)."""
    framework, device = args.one, args.device
    pkg = registry.load(framework)
    model, base = load_spec(args.spec)
    base = dataclasses.replace(base, epochs=1, tf32="off")
    data = training_data(args.dataset, base, subset_size=args.subset, eval_size=args.subset)
    native_tf32 = GPU_CONVENTIONS[LIBRARY[framework]]["tf32"].fields["tf32"]
    out: dict[str, Any] = {"framework": framework, "device": device}
    with tempfile.TemporaryDirectory() as tmp:
        runs: dict[str, list[dict]] = {}
        # A process of keras-jax runs one determinism only (XLA's flag); the others run both.
        plan = [("nondeterministic", False, "off")] * 2
        if args.deterministic == "true":
            out["switch"] = check_switch(framework, device, base)
            at_start = registry.get(framework).deterministic_at_start
            plan = [("deterministic", True, "off")] * 2 + [("native tf32", True, native_tf32)]
            plan += [] if at_start else [("nondeterministic", False, "off")] * 2
        for i, (label, deterministic, tf32) in enumerate(plan):
            train = dataclasses.replace(base, deterministic=deterministic, tf32=tf32)
            run = train_once(pkg, framework, model, train, data, device, Path(tmp) / str(i))
            runs.setdefault(label, []).append(run)
        if "deterministic" in runs:
            first, second = runs["deterministic"]
            out["deterministic_difference"] = largest_difference(
                first["weights"], second["weights"]
            )
            out["tf32_difference"] = largest_difference(
                first["weights"], runs["native tf32"][0]["weights"]
            )
            out["accuracy"] = {
                "off": first["accuracy"],
                native_tf32: runs["native tf32"][0]["accuracy"],
            }
        if "nondeterministic" in runs:
            first, second = runs["nondeterministic"]
            out["nondeterministic_difference"] = largest_difference(
                first["weights"], second["weights"]
            )
        out["train_s"] = sum(run["s"] for group in runs.values() for run in group)
    return out


def child_env(framework: str, deterministic: str) -> dict[str, str]:
    """A worker's environment (``compare.engine.launch``), with XLA's determinism flag for a
    framework that reads it once, at start."""
    env = worker_env(framework, None)
    if registry.get(framework).deterministic_at_start:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --{XLA_FLAG}={deterministic}".strip()
    return env


def run_children(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every framework in a process of its own (keras-jax twice: XLA's flag per process)."""
    results = []
    jobs = [(name, "true") for name in args.frameworks]
    jobs += [
        (name, "false") for name in args.frameworks if registry.get(name).deterministic_at_start
    ]
    for name, deterministic in jobs:
        with tempfile.NamedTemporaryFile(suffix=".json") as answer:
            command = [sys.executable, __file__, "--one", name, "--deterministic", deterministic,
                       "--answer", answer.name, *args.passed]  # fmt: skip
            start = time.perf_counter()
            done = subprocess.run(command, env=child_env(name, deterministic), check=False)
            text = Path(answer.name).read_text()
            found = (
                json.loads(text)
                if done.returncode == 0 and text
                else {"error": f"exit {done.returncode}"}
            )
        found.update(framework=name, process_s=round(time.perf_counter() - start, 1))
        results.append(found)
        print(summary_line(found), flush=True)
    return results


def failures(found: dict[str, Any]) -> list[str]:
    """What failed in one framework's checks (empty: every check passed)."""
    failed = [found["error"]] if "error" in found else []
    failed += [
        f"tf32 {row['tf32']} {row['op']}: error {row['error']:.1e}"
        for row in found.get("switch", [])
        if not row["ok"]
    ]
    if found.get("deterministic_difference", 0) != 0:
        failed.append(f"two deterministic runs differ by {found['deterministic_difference']:.1e}")
    return failed


def summary_line(found: dict[str, Any]) -> str:
    name = found["framework"]
    parts = [f"{name:12}"]
    for row in found.get("switch", []):
        parts.append(f"{row['op']}[{row['tf32']}] {row['error']:.1e}")
    for key in ("deterministic_difference", "nondeterministic_difference", "tf32_difference"):
        if key in found:
            parts.append(f"{key.replace('_difference', '')} runs differ by {found[key]:.1e}")
    parts.append(f"{found['process_s']:.0f} s")
    failed = failures(found)
    return ("FAIL " if failed else "ok   ") + "; ".join(parts + failed)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--frameworks", default=",".join(FRAMEWORKS), help="comma-separated: %(default)s"
    )
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu",
                        help="cpu checks the script itself (default: %(default)s)")  # fmt: skip
    parser.add_argument("--spec", default=str(REPO / "examples" / "resnet_small.yaml"))
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--subset", type=int, default=4096, help="training (and test) images")
    parser.add_argument("--out", type=Path, help="write gpu-checks.json here")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--deterministic", default="true", help=argparse.SUPPRESS)
    parser.add_argument("--answer", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.frameworks = tuple(name.strip() for name in args.frameworks.split(","))
    unknown = [name for name in args.frameworks if name not in FRAMEWORKS]
    if unknown:
        raise UserError(
            f"no GPU checks for {', '.join(unknown)}: it has no GPU path or is not a framework",
            f"choose from {', '.join(FRAMEWORKS)}",
        )
    if args.subset < 1:
        raise UserError(f"--subset must be at least 1, got {args.subset}", "use --subset 4096")
    load_spec(args.spec)  # a bad spec is named here, before any process starts
    args.passed = ["--device", args.device, "--spec", args.spec, "--dataset", args.dataset,
                   "--subset", str(args.subset)]  # fmt: skip
    return args


def main() -> int:
    args = parse()
    if args.one:
        Path(args.answer).write_text(json.dumps(check_framework(args), default=float))
        return 0
    if args.device == "gpu" and not gpu_here("gpu"):
        raise UserError(
            "no GPU is visible here: these checks are of the GPU paths",
            "run it on a machine with an NVIDIA GPU, or with --device cpu to check the script",
        )
    start = time.perf_counter()
    results = run_children(args)
    wall = time.perf_counter() - start
    failed = [found["framework"] for found in results if failures(found)]
    print(
        f"{len(results)} processes in {wall:.0f} s; "
        + (f"failed: {', '.join(failed)}" if failed else "every check passed")
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        record = {"device": args.device, "wall_s": wall, "results": results}
        (args.out / "gpu-checks.json").write_text(json.dumps(record, indent=1, default=float))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "gpu_checks.py"))
