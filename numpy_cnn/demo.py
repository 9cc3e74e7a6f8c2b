"""Walk-throughs that print what they compute and draw it: ``numpy-cnn demo forward|conv``.

``forward_demo`` pushes one input through a tiny dense network by hand, printing every
product and sum; ``conv_demo`` convolves an MNIST digit with a 5x5 edge filter without and with
zero padding, at stride 1 and 2, and max-pools the results. Both use the naive (loop) operations
so that what is printed is the formula itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnn_common.spec import same_padding
from numpy_cnn import ops

# A 2-3-2 network with round numbers, so every step can be checked by hand.
DEMO_X = np.array([[1.0, 2.0]])  # (N=1, D=2)
DEMO_W1 = np.array([[0.5, -1.0, 0.25], [0.25, 0.5, -0.5]])  # (D=2, U=3)
DEMO_B1 = np.array([0.0, 0.5, 0.1])
DEMO_W2 = np.array([[1.0, -1.0], [-0.5, 1.0], [2.0, 0.5]])  # (U=3, K=2)
DEMO_B2 = np.array([0.1, -0.1])
DEMO_LABEL = np.array([0])

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


def forward_demo(out_dir: str | Path = "demo") -> dict[str, np.ndarray]:
    """Forward propagation through ``x (1, 2) -> dense(3) ReLU -> dense(2) -> softmax``,
    printed step by step, and drawn to ``out_dir/forward.png``. Returns the intermediate
    values by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x, w1, b1, w2, b2 = DEMO_X, DEMO_W1, DEMO_B1, DEMO_W2, DEMO_B2
    print("Forward propagation through a 2-3-2 network, one number at a time\n")
    print(f"input x = {x[0].tolist()}\n")
    print("hidden layer: z1[u] = b1[u] + sum_d x[d] * W1[d, u]")
    z1 = ops.dense_naive(x, w1, b1)
    for u in range(w1.shape[1]):
        terms = " + ".join(f"{x[0, d]:g}*{w1[d, u]:g}" for d in range(w1.shape[0]))
        print(f"  z1[{u}] = {b1[u]:g} + {terms} = {z1[0, u]:g}")
    a1 = ops.activation_naive(z1, "relu")
    print(f"ReLU:  a1 = max(z1, 0) = {a1[0].tolist()}\n")
    print("output layer (logits): z2[k] = b2[k] + sum_u a1[u] * W2[u, k]")
    z2 = ops.dense_naive(a1, w2, b2)
    for k in range(w2.shape[1]):
        terms = " + ".join(f"{a1[0, u]:g}*{w2[u, k]:g}" for u in range(w2.shape[0]))
        print(f"  z2[{k}] = {b2[k]:g} + {terms} = {z2[0, k]:.4f}")
    probs = ops.softmax(z2)
    exps = np.exp(z2[0] - z2[0].max())
    print(
        f"\nsoftmax: p[k] = exp(z2[k] - max) / sum = {np.round(exps, 4).tolist()} / "
        f"{exps.sum():.4f} = {np.round(probs[0], 4).tolist()}"
    )
    loss = ops.softmax_cross_entropy_naive(z2, DEMO_LABEL)
    print(f"cross-entropy for label {DEMO_LABEL[0]}: -log p[0] = {loss:.4f}")
    _draw_network(out_dir / "forward.png", [x[0], a1[0], z2[0]], [w1, w2], probs[0])
    print(f"\nwrote {out_dir / 'forward.png'}")
    return {"z1": z1, "a1": a1, "z2": z2, "probs": probs, "loss": np.array(loss)}


def _draw_network(
    path: Path, values: list[np.ndarray], weights: list[np.ndarray], probs: np.ndarray
) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    names = ["input x", "hidden a1 = ReLU(z1)", "logits z2"]
    ys = [np.linspace(1, -1, len(v)) if len(v) > 1 else np.zeros(1) for v in values]
    for layer, (w, (y0, y1)) in enumerate(zip(weights, zip(ys, ys[1:], strict=False), strict=True)):
        for i, ya in enumerate(y0):
            for j, yb in enumerate(y1):
                ax.plot([layer, layer + 1], [ya, yb], color="0.7", zorder=1)
                ax.text(
                    layer + 0.3 + 0.4 * (j / max(len(y1) - 1, 1)),
                    ya + (yb - ya) * 0.3,
                    f"{w[i, j]:g}",
                    fontsize=7,
                    color="tab:blue",
                )
    for layer, (vals, y) in enumerate(zip(values, ys, strict=True)):
        for v, yy in zip(vals, y, strict=True):
            ax.scatter([layer], [yy], s=900, color="white", edgecolor="black", zorder=2)
            ax.text(layer, yy, f"{v:.2f}", ha="center", va="center", fontsize=8, zorder=3)
        ax.text(layer, 1.35, names[layer], ha="center", fontsize=9)
    for p, yy in zip(probs, ys[-1], strict=True):
        ax.text(2.25, yy, f"p = {p:.3f}", va="center", fontsize=8)
    ax.set_xlim(-0.4, 2.7)
    ax.set_ylim(-1.4, 1.6)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
        from cnn_common.data import load_dataset, scale_images

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
            pooled = ops.maxpool_naive(conv, 2, 2)
            label = f"{padding}, stride {stride}"
            shapes[f"conv {label}"] = conv.shape[1:3]
            shapes[f"pool {label}"] = pooled.shape[1:3]
            print(
                f"{label:16s} pad {pad}: conv {conv.shape[1]}x{conv.shape[2]}"
                f" -> 2x2 max-pool {pooled.shape[1]}x{pooled.shape[2]}"
            )
            rows.append((label, conv[0, :, :, 0], pooled[0, :, :, 0]))
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.4 * len(rows)))
    for row, (label, conv, pooled) in zip(axes, rows, strict=True):
        for ax, img, title, cmap in (
            (row[0], x[0, :, :, 0], f"original {x.shape[1]}x{x.shape[2]}", "gray"),
            (row[1], conv, f"conv {label}\n{conv.shape[0]}x{conv.shape[1]}", "RdBu_r"),
            (row[2], pooled, f"max-pool 2x2\n{pooled.shape[0]}x{pooled.shape[1]}", "RdBu_r"),
        ):
            ax.imshow(img, cmap=cmap)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out_dir / "conv.png", dpi=100)
    plt.close(fig)
    print(f"\nwrote {out_dir / 'conv.png'}")
    return shapes
