"""The contract (``docs/design.md``) for the NumPy CNN: build, predict, weights, gradients, files.

The model is a ``numpy_cnn.network.CNN``; its weights are held in the canonical layout, so
``get_weights`` and ``set_weights`` copy without converting anything. Evaluation runs the
forward pass ``EVAL_BATCH`` images at a time, so any number of images fits in memory, and a
chunk's buffers stay in the core's caches (as training's pieces do): 5,000 images evaluate in
a fifth of the time chunks of 1,000 take.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cnn_common.data import check_images
from cnn_common.errors import DataError
from cnn_common.files import atomic_write_npz
from cnn_common.metrics import readouts
from cnn_common.seeds import generator
from cnn_common.spec import ModelSpec, TrainSpec, feature_map_layers, spec_from_dict, spec_to_dict
from cnn_common.weights import Weights, check_weights, init_weights
from numpy_cnn import ops, parallel
from numpy_cnn.network import CNN, backward, forward, make_network
from numpy_cnn.optim import Optimizer
from numpy_cnn.step import PIECE, across_threads, train_step

EVAL_BATCH = PIECE  # images per forward pass in evaluate/predict, as in a training piece
WEIGHTS_PREFIX = "weights/"  # keys of the weights in a saved .npz
SPEC_KEY = "spec"  # key of the model spec (JSON) in a saved .npz


def build(spec: ModelSpec, dtype: str = "float32", *, seed: int = 0) -> CNN:
    """A model for ``spec`` with numpy_cnn's initial weights for run seed ``seed``.

    NumPy has no initialiser of its own: these are the canonical Glorot-uniform kernels and
    zero biases of ``cnn_common.weights.init_weights`` (the textbook ones), drawn from the
    ``init`` stream of ``seed``. ``set_weights`` replaces them.
    """
    return make_network(spec, init_weights(spec, seed, dtype), dtype)


def _in_chunks(
    model: CNN, x: np.ndarray, keep: bool = False
) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """The forward pass over ``x (N, H, W, C)`` in chunks of at most ``EVAL_BATCH`` images,
    spread over the cores as training spreads a batch (``network.across_threads``): one
    contiguous run of chunks per thread of the pool, each with a single-threaded BLAS and its
    own replica's workspaces (fresh buffers of a few MB cost page faults on every chunk), so a
    chunk's numbers never depend on what ran before or beside it. Returns each chunk's
    ``(logits (n, K), {layer: map})`` (maps only with ``keep``), in order."""
    size = max(1, min(EVAL_BATCH, -(-len(x) // parallel.workers())))
    starts = list(range(0, len(x), size))

    def run(replica: CNN, a: int, b: int) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        done = []
        for start in starts[a:b]:
            maps: dict[str, np.ndarray] = {}
            logits, _ = forward(
                replica, x[start : start + size], keep=maps if keep else None, scratch=True
            )  # logits and maps in the replica's workspaces: copied before the next chunk
            done.append((logits.copy(), {name: m.copy() for name, m in maps.items()}))
        return done

    return [chunk for part in across_threads(model, len(starts), run) for chunk in part]


def predict_logits(model: CNN, x: np.ndarray) -> np.ndarray:
    """Raw logits ``(N, K)`` for images ``x (N, H, W, C)`` in the model's dtype.

    A wrong shape or a non-float dtype raises ``ImageError`` with the expected shape.
    """
    x = check_images(x, model.spec.input_shape).astype(model.dtype, copy=False)
    parts = [logits for logits, _ in _in_chunks(model, x)]
    if not parts:
        return np.zeros((0, model.spec.num_classes), dtype=model.dtype)
    return np.concatenate(parts)


predict, evaluate = readouts(predict_logits)


def feature_maps(model: CNN, x: np.ndarray) -> dict[str, np.ndarray]:
    """The maps of ``cnn_common.spec.feature_map_layers`` (every conv after its activation,
    pool, avgpool, batchnorm and add) for ``x (N, H, W, C)`` in evaluation mode, by layer name
    in that order, NHWC float32: ``{"conv1": (N, 24, 24, 16), "pool1": ..., ...}``."""
    x = check_images(x, model.spec.input_shape).astype(model.dtype, copy=False)
    chunks = [maps for _, maps in _in_chunks(model, x, keep=True)]
    if not chunks:
        return {}
    return {
        name: np.concatenate([maps[name] for maps in chunks]).astype(np.float32)
        for name in feature_map_layers(model.spec)
    }


def get_weights(model: CNN) -> Weights:
    """Copies of the weights in the canonical layout, in layer order (batchnorm's running
    statistics included)."""
    return {name: value.copy() for name, value in model.weights.items()}


def set_weights(model: CNN, weights: Weights) -> None:
    """Replace the weights (canonical layout; cast to the model's dtype). Shapes are checked:
    a mismatch raises ``WeightsError`` (a ``ValueError``) naming the tensor."""
    check_weights(model.spec, weights)
    for name in model.weights:
        model.weights[name][...] = np.asarray(weights[name], dtype=model.dtype)


def loss_and_grads(model: CNN, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
    """Mean softmax cross-entropy over the batch and its gradient for every trainable tensor
    (canonical layout), deterministic: dropout is off, batchnorm normalises with the batch's
    statistics (training mode) and its running statistics stay as they are (a query)."""
    x = check_images(x, model.spec.input_shape).astype(model.dtype, copy=False)
    logits, caches = forward(model, x, batch_stats=True)
    loss, dlogits = ops.softmax_cross_entropy(logits, np.asarray(y, dtype=np.int64))
    return loss, backward(model, dlogits, caches)


def layer_trace(model: CNN, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output (``forward/<layer>``), the gradient of the mean loss with respect
    to the tensor every layer reads first (``grad_input/<layer>``: its total gradient, summed
    over every layer that reads it), to every trainable tensor (``grad/<tensor>``), and the
    loss (``loss``), in evaluation mode (dropout off, batchnorm's running statistics);
    canonical layout (NHWC maps, H, W, C flatten)."""
    x = check_images(x, model.spec.input_shape).astype(model.dtype, copy=False)
    outputs: dict[str, np.ndarray] = {}
    logits, caches = forward(model, x, keep=outputs, every_layer=True)
    loss, dlogits = ops.softmax_cross_entropy(logits, np.asarray(y, dtype=np.int64))
    inputs: dict[str, np.ndarray] = {}
    grads = backward(model, dlogits, caches, inputs)
    return {
        "loss": np.asarray(loss, dtype=np.float64),
        **{f"forward/{name}": value for name, value in outputs.items()},
        **{f"grad_input/{name}": value for name, value in inputs.items()},
        **{f"grad/{name}": value for name, value in grads.items()},
    }


def train_steps(
    model: CNN,
    train_spec: TrainSpec,
    batches: list[tuple[np.ndarray, np.ndarray]],
    steps_per_epoch: int | None = None,
) -> list[float]:
    """One optimiser step per ``(x, y)`` batch from a fresh optimiser state, the first updates
    of a run of ``steps_per_epoch`` updates an epoch (default: the batches are one epoch) for
    the learning-rate schedule; returns the losses.

    The weights are updated in place, batchnorm's running statistics once per step (training
    mode). Dropout masks, if any, come from the ``dropout`` seed stream of
    ``train_spec.seed``, as in ``train``.
    """
    per_epoch = steps_per_epoch or len(batches)
    optimizer = Optimizer(train_spec, model.trainable_weights(), per_epoch)
    rng = generator(train_spec.seed, "dropout")
    losses = []
    for x, y in batches:
        x = check_images(x, model.spec.input_shape).astype(model.dtype, copy=False)
        loss, _ = train_step(model, optimizer, x, np.asarray(y, dtype=np.int64), rng)
        losses.append(loss)
    return losses


def save(model: CNN, path: str | Path) -> None:
    """Write NumPy's own file, an ``.npz`` archive (``np.load`` reads it with nothing but
    NumPy): ``weights/<tensor>`` in the canonical layout and ``spec``, the model spec as JSON;
    atomic."""
    arrays = {f"{WEIGHTS_PREFIX}{name}": value for name, value in model.weights.items()}
    arrays[SPEC_KEY] = np.array(json.dumps(spec_to_dict(model.spec)))
    atomic_write_npz(path, arrays)


def load(path: str | Path) -> CNN:
    """Rebuild a model from a file written by ``save``, in the dtype its weights were stored
    in. A file that is not one raises ``DataError`` naming it; weights that do not fit the
    stored spec raise ``WeightsError``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist", "check the path")
    try:
        with np.load(path, allow_pickle=False) as archive:
            spec = spec_from_dict(json.loads(str(archive[SPEC_KEY])))[0]
            weights = {
                key[len(WEIGHTS_PREFIX) :]: archive[key]
                for key in archive.files
                if key.startswith(WEIGHTS_PREFIX)
            }
    except Exception as exc:  # noqa: BLE001 - any failure to read means a bad file
        raise DataError(
            f"{path} is not a numpy_cnn model file ({type(exc).__name__}: {exc})",
            "write it with numpy_cnn.save (or `cnn-compare convert`); a canonical "
            ".safetensors weight file is read by cnn_common.weights.load_weights",
        ) from None
    check_weights(spec, weights)
    return make_network(spec, weights, weights["logits.kernel"].dtype.name)
