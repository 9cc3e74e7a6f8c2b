# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # cnn-rosetta, walked through
#
# One comparison done by hand with the Python API: the same CNN trained in NumPy (written
# from scratch) and in plain PyTorch, from the same initial weights on the same batches,
# then compared step by step and layer by layer. Then the NumPy walk-throughs: the forward
# pass of the real network on one digit, a convolution drawn, and backprop checked against
# finite differences.
#
# This file is a notebook in jupytext's percent format: `jupytext --to notebook
# examples/walkthrough.py` makes the `.ipynb`, or open it as a notebook in Jupyter with
# jupytext installed. It needs MNIST where `cnn_common.data` finds it (`$CNN_DATA_DIR`).
# `$WALKTHROUGH_SUBSET` sets the training images (2048 by default: 16 steps, seconds on a
# laptop) and `$WALKTHROUGH_OUT` the folder the runs and figures go to.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
from IPython.display import Image, display

import numpy_cnn
import pytorch_cnn
from cnn_common.batches import epoch_batches
from cnn_common.data import training_data
from cnn_common.spec import ModelSpec, TrainSpec, param_count
from cnn_common.weights import init_weights, weights_digest
from compare.parity.locate import compare_records, first_departures
from compare.stats.inference import mean_interval
from numpy_cnn import demo, gradcheck

SUBSET = int(os.environ.get("WALKTHROUGH_SUBSET", "2048"))
OUT = Path(os.environ.get("WALKTHROUGH_OUT") or tempfile.mkdtemp(prefix="walkthrough-"))

spec = ModelSpec()  # the seed model: conv 16, pool, conv 32, pool, dense 64, dense 10
train_spec = TrainSpec(epochs=1)  # Adam 1e-3, batch 128, seed 0
data = training_data("mnist", train_spec, subset_size=SUBSET, eval_size=1000)
print(
    f"{param_count(spec):,} parameters; {len(data.x_train)} training, {len(data.x_val)} "
    f"validation and {len(data.x_test)} test images; results in {OUT}"
)

# %% [markdown]
# ## Train both from the same start
#
# `init_weights` draws one canonical set of weights (Glorot-uniform kernels, zero biases) from
# the run's seed; passing it to both trainers removes the initialisers from the comparison,
# and both read their batches from the same `epoch_batches` order. Each `train` writes its
# run record (`run.json`) into its folder.

# %%
start = init_weights(spec, train_spec.seed, train_spec.dtype)
frameworks = {"numpy": numpy_cnn, "pytorch": pytorch_cnn}
results = {
    name: package.train(
        spec, train_spec, data, OUT / name, init_weights=start, progress=False, device="cpu"
    )
    for name, package in frameworks.items()
}
for name, result in results.items():
    print(
        f"{name:8} test accuracy {result.test_accuracy:.4f}  test loss {result.test_loss:.4f}  "
        f"start {result.init_digest}"
    )
print(f"both started from {weights_digest(start)}")

# %% [markdown]
# ## Step losses
#
# Step 1's loss is computed at the shared weights, so the two agree there up to float32
# rounding; every update then adds the two kernels' rounding differences, and the gap grows
# slowly with the steps.

# %%
losses = {name: np.array(result.step_losses) for name, result in results.items()}
gap = losses["numpy"] - losses["pytorch"]
print(f"{'step':>4} {'numpy':>10} {'pytorch':>10} {'difference':>12}")
for step in range(len(gap)):
    print(f"{step + 1:4d} {losses['numpy'][step]:10.6f} {losses['pytorch'][step]:10.6f} "
          f"{gap[step]:+12.2e}")  # fmt: skip

# %% [markdown]
# `compare.stats` puts an interval on the mean of the per-step differences. Steps of one run
# are not independent draws, so this describes the size of the drift; whether two frameworks
# really differ is a question for several seeds (`cnn-compare run --seeds 5`), which the
# report answers with the same module.

# %%
drift = mean_interval(gap)
print(
    f"mean step-loss difference numpy - pytorch: {drift.mean:+.2e} "
    f"[{drift.low:+.2e}, {drift.high:+.2e}] over {drift.n} steps"
)

# %% [markdown]
# ## One batch, layer by layer
#
# `layer_trace` returns every layer's output, the gradient with respect to every layer's
# input and every weight, all in the canonical layout (NHWC maps, H, W, C flatten), so the
# two frameworks can be compared entry by entry. `compare.parity.locate` compares them in the order
# the computation runs, with float32 tolerances, and names the first place they part (none,
# here).

# %%
batch = epoch_batches(len(data.x_train), train_spec.batch_size, train_spec.seed, 0)[0]
x, y = data.x_train[batch], data.y_train[batch]
traces = {}
for name, package in frameworks.items():
    model = package.build(spec)
    package.set_weights(model, start)
    trace = package.layer_trace(model, x, y)
    traces[name] = {f"step0/{key}": np.asarray(value) for key, value in trace.items()}
rows = compare_records(traces, spec, train_spec.dtype)
for row in rows:
    print(f"{row.where():52} {row.value:9.1e} (tolerance {row.tolerance:g})")
print("first departure:", first_departures(rows)["numpy vs pytorch"])

# %% [markdown]
# ## The forward pass of the real network, step by step
#
# `numpy_cnn.demo.forward_demo` runs the spec's network on one test digit with
# `numpy_cnn.ops` one call at a time and prints each layer's output. It is the model's own
# computation: its maps are `feature_maps`'s to the last bit, and its logits are
# `predict_logits`'s up to float32 rounding (predict runs each convolution and its pooling as
# one operation, `numpy_cnn.fused.conv_pool_forward`, whose GEMM adds the same products in
# another order).

# %%
values = demo.forward_demo(OUT / "demo", index=0)
model = numpy_cnn.build(spec, seed=0)  # the same canonical weights of seed 0
maps = numpy_cnn.feature_maps(model, values["input"])
same = all(np.array_equal(values[layer], maps[layer]) for layer in ("pool1", "pool2"))
print(f"walk-through maps equal feature_maps: {same}")
logits = numpy_cnn.predict_logits(model, values["input"])
gap = float(np.max(np.abs(values["logits"] - logits)))
print(f"walk-through logits vs predict_logits: largest difference {gap:.1e}")

# %% [markdown]
# ## A convolution, drawn
#
# A vertical-edge filter over the digit, without and with padding, at stride 1 and 2, each
# then max-pooled; each row's two maps share one colour scale, white at 0.

# %%
shapes = demo.conv_demo(OUT / "demo")
display(Image(filename=str(OUT / "demo" / "conv.png")))

# %% [markdown]
# ## Backprop against finite differences
#
# Every hand-written backward pass of `numpy_cnn.ops`, and the whole network, against
# central differences of the forward pass in float64 (`numpy-cnn gradcheck`).

# %%
checks = gradcheck.run_checks(seed=0, samples=10)
print("\n".join(gradcheck.report(checks)))
