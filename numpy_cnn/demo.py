"""Walk-throughs that print what they compute and draw it: ``numpy-cnn demo forward|conv``.

``forward_demo`` walks the spec's real CNN on one real test image, one call of the ops modules
per step (the same functions training runs; batchnorm in evaluation mode), printing each
layer's output shape and a few of its values, then the class probabilities and the loss;
``conv_demo`` convolves an MNIST digit with a 5x5 edge filter without and with zero padding,
at stride 1 and 2, and max-pools the results with the naive (loop) operations, so that what
is drawn is the formula itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn_common.data import check_images, load_dataset, scale_images
from cnn_common.errors import UserError
from cnn_common.spec import IMAGE, Layer, ModelSpec, layers, same_padding
from cnn_common.weights import Weights, init_weights, load_weights
from numpy_cnn import grouped, norm, ops, parallel, pooling

# A 5x5 vertical-edge filter: positive on the left, negative on the right (a widened Sobel).
EDGE_FILTER = (
    np.array(
        [
            [1, 2, 0, -2, -1],
            [2, 4, 0, -4, -2],
            [3, 6, 0, -6, -3],
            [2, 4, 0, -4, -2],
            [1, 2, 0, -2, -1],
        ],
        dtype=np.float32,
    )
    / 24.0
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------- forward


@dataclass(frozen=True)
class Step:
    """One operation of the forward pass: its name (``conv1``, ``conv1/relu``, ...), kind, the
    call that computed it and its output (batch axis first)."""

    name: str
    kind: str  # a layer kind of cnn_common.spec (logits: dense), or activation
    call: str
    output: np.ndarray


def walk(spec: ModelSpec, weights: Weights, x: np.ndarray) -> list[Step]:
    """The forward pass of ``spec`` on images ``x (N, H, W, C)`` in evaluation mode (batchnorm
    with its running statistics), one call of the ops modules a step, following the layer
    graph (each layer reads ``Layer.inputs``), each activation where the spec puts it (before
    pooling; ``numpy_cnn.network`` pools first, which gives the same numbers for these
    non-decreasing activations). The last step's output is the logits ``(N, K)``."""
    steps: list[Step] = []
    outputs = {IMAGE: x}  # every layer's output by name, for the layers that read it
    for layer in layers(spec):
        name = layer.name
        out = outputs[layer.inputs[0]]
        if layer.kind == "conv":
            out, call = _conv(layer, weights, out)
        elif layer.kind == "pool":
            out, _ = pooling.maxpool_forward(out, layer.kernel_size, layer.stride)
            call = f"pooling.maxpool_forward(x, size={layer.kernel_size}, stride={layer.stride})"
        elif layer.kind == "avgpool":
            out, _ = pooling.avgpool_forward(out, layer.kernel_size, layer.stride)
            call = f"pooling.avgpool_forward(x, size={layer.kernel_size}, stride={layer.stride})"
        elif layer.kind == "global_avgpool":
            out, _ = pooling.global_avgpool_forward(out)
            call = "pooling.global_avgpool_forward(x)  (the mean of each channel)"
        elif layer.kind == "batchnorm":
            running = (weights[f"{name}.moving_mean"], weights[f"{name}.moving_variance"])
            gamma, beta = weights[f"{name}.gamma"], weights[f"{name}.beta"]
            out, _ = norm.batchnorm_forward(out, gamma, beta, layer.epsilon, running)
            call = (
                f"norm.batchnorm_forward(x, {name}.gamma, {name}.beta, eps={layer.epsilon:g}, "
                f"running=({name}.moving_mean, {name}.moving_variance))  (evaluation mode)"
            )
        elif layer.kind == "activation":
            out, _ = ops.activation_forward(out, layer.activation)
            call = f"ops.activation_forward(x, {layer.activation!r})"
        elif layer.kind == "add":
            out = ops.add_forward(out, outputs[layer.inputs[1]])
            call = f"ops.add_forward({layer.inputs[0]}, {layer.inputs[1]})"
        elif layer.kind == "flatten":
            out = out.reshape(len(out), -1)  # (N, H*W*C), H, W, C order
            call = "x.reshape(N, -1)  (H, W, C order)"
        elif layer.kind in ("dense", "logits"):
            kernel, bias = weights[f"{name}.kernel"], weights[f"{name}.bias"]
            out, _ = ops.dense_forward(out, kernel, bias)
            call = f"ops.dense_forward(x, {name}.kernel {kernel.shape}, {name}.bias {bias.shape})"
        else:
            out, _ = ops.dropout_forward(out, layer.rate, None)
            call = f"ops.dropout_forward(x, rate={layer.rate}, rng=None)  (identity at inference)"
        steps.append(Step(name, "dense" if layer.kind == "logits" else layer.kind, call, out))
        if layer.activation != "linear" and layer.kind != "activation":
            out, _ = ops.activation_forward(out, layer.activation)
            call = f"ops.activation_forward(x, {layer.activation!r})"
            steps.append(Step(f"{name}/{layer.activation}", "activation", call, out))
        outputs[name] = out
    return steps


def _conv(layer: Layer, weights: Weights, x: np.ndarray) -> tuple[np.ndarray, str]:
    """A conv layer's output before its activation, and the call that computed it: a grouped
    convolution for ``groups`` > 1, a zero bias where the layer has none."""
    name, kernel = layer.name, weights[f"{layer.name}.kernel"]
    bias = weights.get(f"{name}.bias")
    where = f"stride={layer.stride}, pad={layer.pad}"
    if layer.groups > 1:
        out, _ = grouped.grouped_conv_forward(
            x, kernel, bias, layer.stride, layer.pad, layer.groups
        )
        named = f"{name}.bias {bias.shape}" if bias is not None else "None"
        call = (
            f"grouped.grouped_conv_forward(x, {name}.kernel {kernel.shape}, {named}, {where}, "
            f"groups={layer.groups})"
        )
        return out, call
    named = f"{name}.bias {bias.shape}" if bias is not None else "zeros (no bias)"
    if bias is None:
        bias = np.zeros(kernel.shape[3], dtype=kernel.dtype)
    out, _ = ops.conv2d_forward(x, kernel, bias, layer.stride, layer.pad)
    return out, f"ops.conv2d_forward(x, {name}.kernel {kernel.shape}, {named}, {where})"


def _values(value: np.ndarray) -> list[str]:
    """A few values of one image's output: the 3x3 of channel 0 of a map ``(1, H, W, C)``
    around its largest value (where the image is), the first 8 values of a vector ``(1, D)``."""
    if value.ndim == 4:
        channel = value[0, :, :, 0]  # (H, W)
        h, w = channel.shape
        i, j = np.unravel_index(int(channel.argmax()), channel.shape)
        top, left = min(max(i - 1, 0), max(h - 3, 0)), min(max(j - 1, 0), max(w - 3, 0))
        patch = channel[top : top + 3, left : left + 3]
        head = f"    channel 0, rows {top}-{top + patch.shape[0] - 1}, "
        head += f"columns {left}-{left + patch.shape[1] - 1} (around its maximum):"
        return [head, *("      " + " ".join(f"{v:8.4f}" for v in row) for row in patch)]
    shown = value[0, :8]
    more = " ..." if value.shape[1] > len(shown) else ""
    return ["    first values: " + " ".join(f"{v:.4f}" for v in shown) + more]


def forward_demo(
    out_dir: str | Path = "demo",
    *,
    spec: ModelSpec | None = None,
    weights_file: str | Path | None = None,
    dataset: str = "mnist",
    data_dir: str | Path | None = None,
    index: int = 0,
    image: np.ndarray | None = None,
    label: int = 0,
) -> dict[str, np.ndarray]:
    """The CNN's forward pass on one test image, step by step, printed and drawn to
    ``out_dir/forward.png``.

    The weights are those of ``weights_file`` (a run's ``weights.safetensors``, with its spec),
    else the canonical initial weights of seed 0 for ``spec`` (default the seed model). The
    image is test image ``index`` of ``dataset``, or ``image (H, W, C)`` in [0, 1] with
    ``label``. Returns every step's output by name (``conv1``, ``conv1/relu``, ...,
    ``logits``) and ``input``, ``probs``, ``loss``, ``prediction``, ``label``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if weights_file is not None:
        weights, spec, _ = load_weights(weights_file)
        origin = f"weights from {weights_file}"
    else:
        spec = spec or ModelSpec()
        weights = init_weights(spec, 0, "float32")
        origin = "the canonical initial weights of seed 0 (untrained)"
    dtype = weights["logits.kernel"].dtype
    class_names: tuple[str, ...] = tuple(str(k) for k in range(spec.num_classes))
    if image is None:
        raw = load_dataset(dataset, root=data_dir)
        if not 0 <= index < len(raw.x_test):
            raise UserError(
                f"--index {index} is not a test image of {dataset}",
                f"use --index 0 to {len(raw.x_test) - 1}",
            )
        x = scale_images(raw.x_test[index : index + 1], dtype.name)  # (1, H, W, C)
        label = int(raw.y_test[index])
        class_names = raw.class_names
        what = f"{dataset} test image {index}"
    else:
        x = np.asarray(image, dtype=dtype)[None]  # (1, H, W, C)
        what = "the given image"
    x = check_images(x, spec.input_shape)
    print(f"Forward pass of the CNN on {what} (label {label}), {origin}, {dtype.name}\n")
    print(f"input  {x.shape}  pixels in [0, 1]")
    print(*_values(x), sep="\n")
    steps = parallel.in_pool(walk, spec, weights, x)  # the same BLAS threading as predict
    for step in steps:
        print(f"\n{step.name}  ({step.kind})  -> {step.output.shape}")
        print(f"    {step.call}")
        print(*_values(step.output), sep="\n")
    logits = steps[-1].output  # (1, K)
    probs = ops.softmax(logits)  # (1, K)
    loss, _ = ops.softmax_cross_entropy(logits, np.array([label]))
    prediction = int(probs[0].argmax())
    print("\nsoftmax: p[k] = exp(z[k] - max z) / sum_j exp(z[j] - max z)")
    for k, (z, p) in enumerate(zip(logits[0], probs[0], strict=True)):
        marks = (" <- predicted" if k == prediction else "") + (" <- true" if k == label else "")
        print(f"  {class_names[k]:>12}  z = {z:8.4f}  p = {p:.4f}  {'#' * round(40 * p)}{marks}")
    print(f"\npredicted class {prediction} ({class_names[prediction]}), true label {label}")
    print(f"cross-entropy: -log p[{label}] = {loss:.4f}")
    _draw_forward(out_dir / "forward.png", x, steps, probs[0], label, class_names)
    print(f"\nwrote {out_dir / 'forward.png'}")
    return {
        "input": x,
        **{step.name: step.output for step in steps},
        "logits": logits,
        "probs": probs,
        "loss": np.array(loss),
        "prediction": np.array(prediction),
        "label": np.array(label),
    }


def _draw_forward(
    path: Path,
    x: np.ndarray,
    steps: list[Step],
    probs: np.ndarray,
    label: int,
    class_names: tuple[str, ...],
) -> None:
    """The input, channel 0 of every map after its activation and pooling, the probabilities."""
    maps = [("input", x)]
    for i, step in enumerate(steps):
        following = steps[i + 1] if i + 1 < len(steps) else None
        activated = following is not None and following.name.startswith(f"{step.name}/")
        if step.output.ndim == 4 and not activated:
            maps.append((step.name, step.output))
    plt = _pyplot()
    columns = 3
    rows = -(-(len(maps) + 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.0 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, (name, value) in zip(flat, maps, strict=False):
        image = ax.imshow(value[0, :, :, 0], cmap="gray" if name == "input" else "viridis")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        size = "x".join(str(s) for s in value.shape[1:])
        ax.set_title(f"{name} {size}\nchannel 0", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    bars = flat[len(maps)]
    colours = ["tab:green" if k == label else "tab:blue" for k in range(len(probs))]
    bars.bar(range(len(probs)), probs, color=colours)
    bars.set_xticks(range(len(probs)), class_names, rotation=90 if len(class_names[0]) > 2 else 0)
    bars.set_ylim(0, 1)
    bars.set_title(f"softmax probabilities (true {label} in green)", fontsize=9)
    for ax in flat[len(maps) + 1 :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- convolution


def conv_demo(
    out_dir: str | Path = "demo",
    dataset: str = "mnist",
    data_dir: str | Path | None = None,
    image: np.ndarray | None = None,
) -> dict[str, tuple[int, ...]]:
    """One digit ``(28, 28)`` convolved with ``EDGE_FILTER`` (5x5) four ways — padding valid or
    same, stride 1 or 2 — each then 2x2 max-pooled; printed shapes and ``out_dir/conv.png``.

    ``image`` (H, W) in [0, 1] replaces the first test digit of ``dataset``. Returns the shape
    of every result by name.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if image is None:
        raw = load_dataset(dataset, root=data_dir)
        image = scale_images(raw.x_test[:1])[0, :, :, 0]
    x = np.asarray(image, dtype=np.float32)[None, :, :, None]  # (1, H, W, 1)
    kernel = EDGE_FILTER[:, :, None, None]  # (5, 5, C=1, F=1)
    print(f"input digit: {x.shape[1:3]}; filter: {EDGE_FILTER.shape} vertical-edge detector")
    print("out = (in + pad_total - kernel) // stride + 1\n")
    rows, shapes = [], {"input": x.shape[1:3]}
    for padding in ("valid", "same"):
        for stride in (1, 2):
            if padding == "same":
                pad = (same_padding(x.shape[1], 5, stride), same_padding(x.shape[2], 5, stride))
            else:
                pad = ops.NO_PAD
            conv = ops.conv2d_naive(x, kernel, np.zeros(1, np.float32), stride, pad)
            pooled = pooling.maxpool_naive(conv, 2, 2)
            label = f"{padding}, stride {stride}"
            shapes[f"conv {label}"] = conv.shape[1:3]
            shapes[f"pool {label}"] = pooled.shape[1:3]
            print(
                f"{label:16s} pad {pad}: conv {conv.shape[1]}x{conv.shape[2]}"
                f" -> 2x2 max-pool {pooled.shape[1]}x{pooled.shape[2]}"
            )
            rows.append((label, conv[0, :, :, 0], pooled[0, :, :, 0]))
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 2.6 * len(rows)), squeeze=False)
    for row, (label, conv, pooled) in zip(axes, rows, strict=True):
        # One scale per row, symmetric about 0 so white is 0: pooling keeps a subset of the
        # convolved values, so both maps of a row read on the same colour bar.
        limit = float(np.abs(conv).max()) or 1.0
        for ax, img, title, cmap, (vmin, vmax) in (
            (row[0], x[0, :, :, 0], f"original {x.shape[1]}x{x.shape[2]}", "gray", (0, 1)),
            (row[1], conv, f"conv {label}\n{conv.shape[0]}x{conv.shape[1]}", "RdBu_r",
             (-limit, limit)),
            (row[2], pooled, f"max-pool 2x2\n{pooled.shape[0]}x{pooled.shape[1]}", "RdBu_r",
             (-limit, limit)),
        ):  # fmt: skip
            shown = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out_dir / "conv.png", dpi=100)
    plt.close(fig)
    print(f"\nwrote {out_dir / 'conv.png'}")
    return shapes
