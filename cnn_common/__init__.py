"""Shared, framework-free parts of cnn-rosetta: what every framework does alike, once.

Its modules (a test checks that this list names every one, and nothing else):

- ``spec`` (the model and training spec), ``train_spec`` (the training half, which ``spec``
  re-exports), ``graph`` (the unrolled layers and the layer list),
  ``spec_checks`` (the checks of a spec's values, window sizes), ``schedule`` (weight decay
  and the learning-rate schedule), ``spec_files`` (YAML/JSON, ``--set`` overrides);
- ``datasets`` (the registry), ``data`` (where the files are looked for, the split),
  ``idx`` (parsing and checking a file), ``download`` (checksum-verified download);
- ``batches`` (THE batch order), ``seeds`` (named streams);
- ``weights`` (canonical layout, initialisation, the PyTorch conversion, files),
  ``transfer`` (a trained run's matching layers in a new spec's starting weights);
- ``metrics`` (loss, accuracy and predictions from logits; confusion matrix, report);
- ``trainer`` (what every framework's train function does around its own loop: the checks,
  the recorder, resume or start clean, warnings);
- ``recorder`` (the run record and the progress events of a training run), ``events``,
  ``results`` (the record), ``files`` (atomic writes, checkpoint files), ``progress``;
- ``framework`` (what a framework package declares, the contract's names), ``conventions``
  (each framework's own batchnorm, weight-decay, schedule and freezing conventions, and a run
  that hands topics back to them), ``gpu`` (TensorFloat-32 and deterministic kernels: each
  library's own, and the spec's set in its words), ``cli`` (the flags every trainer shares),
  ``errors`` (user errors: a message and the fix);
- ``phases`` (where a training step's time goes), ``machine`` (the machine a run measured on),
  ``memory`` (what a run needs, estimated from the spec; a run that cannot fit refused),
  ``numeric`` (central finite differences for gradient checks).

Imports NumPy (and PyYAML, safetensors, pooch lazily) only: never torch, TensorFlow or keras,
but in ``gpu``'s setters, which import their library when that library's training calls them
on a GPU.
"""

from cnn_common.batches import augment_batch, epoch_batches, shard_batches, steps_per_epoch
from cnn_common.data import Data, load_dataset, prepare_data, training_data
from cnn_common.errors import (
    DataError,
    ImageError,
    NonFiniteLossError,
    SpecError,
    UserError,
    WeightsError,
)
from cnn_common.framework import CONTRACT, FrameworkInfo
from cnn_common.metrics import evaluate_logits
from cnn_common.recorder import RunRecorder
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
from cnn_common.spec_files import load_spec
from cnn_common.weights import from_torch_layout, init_weights, to_torch_layout

__all__ = [
    "CONTRACT",
    "ConvBlock",
    "Data",
    "DataError",
    "DenseLayer",
    "EpochRecord",
    "FrameworkInfo",
    "ImageError",
    "ModelSpec",
    "NonFiniteLossError",
    "RunRecorder",
    "RunResult",
    "SpecError",
    "TrainSpec",
    "UserError",
    "WeightsError",
    "augment_batch",
    "epoch_batches",
    "evaluate_logits",
    "flops",
    "from_torch_layout",
    "init_weights",
    "layer_shapes",
    "layers",
    "load_dataset",
    "load_spec",
    "param_count",
    "prepare_data",
    "shard_batches",
    "steps_per_epoch",
    "to_torch_layout",
    "training_data",
]
