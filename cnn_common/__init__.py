"""Shared, framework-free parts of cnn-rosetta: spec, data, batch order, weights, results.

Imports NumPy (and PyYAML, safetensors, pooch lazily) only: never torch, TensorFlow or keras.
"""

from cnn_common.batches import augment_batch, epoch_batches, shard_batches, steps_per_epoch
from cnn_common.data import Data, load_dataset, prepare_data
from cnn_common.errors import DataError, NonFiniteLossError, SpecError, UserError
from cnn_common.results import EpochRecord, RunResult
from cnn_common.spec import (
    ConvBlock,
    DenseLayer,
    ModelSpec,
    TrainSpec,
    flops,
    layer_shapes,
    layers,
    param_count,
)
from cnn_common.weights import from_torch_layout, init_weights, to_torch_layout

__all__ = [
    "ConvBlock",
    "Data",
    "DataError",
    "DenseLayer",
    "EpochRecord",
    "ModelSpec",
    "NonFiniteLossError",
    "RunResult",
    "SpecError",
    "TrainSpec",
    "UserError",
    "augment_batch",
    "epoch_batches",
    "flops",
    "from_torch_layout",
    "init_weights",
    "layer_shapes",
    "layers",
    "load_dataset",
    "param_count",
    "prepare_data",
    "shard_batches",
    "steps_per_epoch",
    "to_torch_layout",
]
