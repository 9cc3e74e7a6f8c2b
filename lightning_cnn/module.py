"""``LitCNN``: the spec's CNN as a ``LightningModule``, ready to reuse in other code.

::

    from lightning_cnn import ImageDataModule, LitCNN
    model = LitCNN()                       # the seed model and its training settings
    trainer = lightning.Trainer(max_epochs=5, use_distributed_sampler=False)
    trainer.fit(model, datamodule=ImageDataModule())  # MNIST; dataset="fashion-mnist" too

The module holds no device code (the Trainer places it) and no data code (the data module
gives ``(x: (B, C, H, W), y: (B,))`` batches). Accuracy is torchmetrics'
``MulticlassAccuracy(average="micro")``: correct / seen, the number Keras and NumPy report;
the torchmetrics default (``"macro"``) averages per class and is a different number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from cnn_common.results import check_finite_loss
from cnn_common.schedule import scheduled
from cnn_common.spec import ModelSpec, TrainSpec, spec_from_dict, spec_to_dict
from pytorch_cnn.batching import dropout_seed
from pytorch_cnn.model import build as build_network
from pytorch_cnn.network import TORCH_DTYPES
from pytorch_cnn.optim import make_optimizer, set_learning_rate


def as_model_spec(value: ModelSpec | Mapping[str, Any] | None) -> ModelSpec:
    """A ``ModelSpec`` from itself, its plain-dict form (a checkpoint's hparams) or None."""
    if value is None or isinstance(value, ModelSpec):
        return value or ModelSpec()
    return spec_from_dict({"model": dict(value)})[0]


def as_train_spec(value: TrainSpec | Mapping[str, Any] | None) -> TrainSpec:
    """A ``TrainSpec`` from itself, its plain-dict form or None (the defaults)."""
    if value is None or isinstance(value, TrainSpec):
        return value or TrainSpec()
    return spec_from_dict({"train": dict(value)})[1]


class LitCNN(L.LightningModule):
    """The spec's CNN with its loss, metrics and optimiser.

    Args:
        model_spec: the architecture (a ``ModelSpec`` or its dict form); default the seed model.
        train_spec: the optimiser settings, weight decay, learning-rate schedule and seed are
            read from it (``TrainSpec`` or dict); batch size, split and augmentation belong to
            the data module.
        native_padding: pad 'same' layers as PyTorch code usually does
            (``cnn_common.spec.native_pads``) instead of as the spec says.

    Logs the training loss and accuracy per step (``train_loss_step``, ``train_acc_step``) and
    per epoch (``train_loss_epoch``, ``train_acc_epoch``: exact means over the epoch's images,
    synced across processes), ``val_loss``/``val_acc`` and ``test_loss``/``test_acc`` per
    epoch; after ``Trainer.test`` the confusion matrix ``(K, K)`` (rows = true class) is in
    ``test_confusion``. A NaN or infinite training loss raises ``NonFiniteLossError`` before
    the optimiser step, so the weights stay finite.

    Step values are handed to ``self.log`` on the steps the Trainer writes them
    (``Trainer(log_every_n_steps=...)``, 1 = every step), so the logs are those of logging every
    step; each ``self.log`` call costs a noticeable share of a small model's step on a CPU
    (docs/design.md has the figure). The epoch values come from torchmetrics objects, updated
    once at the end of the epoch with all its predictions and losses (kept as tensors step by
    step): the same counts as updating them every step, without the metric bookkeeping on
    every step.

    The Trainer switches the network's modes: training steps in training mode (batchnorm
    normalises with the batch's statistics and updates its running ones), validation, test and
    prediction in evaluation mode (the running statistics, dropout off), as the contract's
    ``evaluate`` computes them. A layer the spec freezes (``trainable: false``) is in the
    state dict and every checkpoint but not in the optimiser: its kernel, bias, gamma and beta
    never change. Under DDP each process normalises with its share of the batch, and the
    running statistics are the first process's (DDP broadcasts its buffers).

    Input shape: ``(N, C, H, W)``. Output shape: ``(N, K)`` logits.
    """

    def __init__(
        self,
        model_spec: ModelSpec = ModelSpec(),  # noqa: B008 - frozen, so a shared default is safe
        train_spec: TrainSpec = TrainSpec(),  # noqa: B008
        native_padding: bool = False,
    ) -> None:
        super().__init__()
        self.model_spec = as_model_spec(model_spec)
        self.train_spec = as_train_spec(train_spec)
        # Plain dicts in the checkpoint: readable with torch.load(weights_only=True) and in
        # hparams.yaml; the constructor accepts them back (load_from_checkpoint).
        self.save_hyperparameters(
            {
                "model_spec": spec_to_dict(self.model_spec)["model"],
                "train_spec": dataclasses.asdict(self.train_spec),
                "native_padding": native_padding,
            }
        )
        # Parameters in the spec's dtype, so a float64 run needs no precision plugin; PyTorch's
        # initialisers drawn from the run seed, as the plain loop draws them.
        self.model = build_network(
            self.model_spec,
            self.train_spec.dtype,
            seed=self.train_spec.seed,
            native_padding=native_padding,
        )
        # One image in the network's layout and dtype, (1, C, H, W): what `to_onnx(path)` and
        # the model summary's shapes run when given no input of their own.
        h, w, c = self.model_spec.input_shape
        self.example_input_array = torch.zeros(
            1, c, h, w, dtype=TORCH_DTYPES[self.train_spec.dtype]
        )
        classes = self.model_spec.num_classes
        self.train_loss = MeanMetric(nan_strategy="disable")  # a NaN loss raises anyway
        # No per-step argument checks on the training metric: on a GPU they cost device syncs
        # every step, and the labels are checked when the dataset is read.
        self.train_acc = MulticlassAccuracy(classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(classes, average="micro")
        self.test_acc = MulticlassAccuracy(classes, average="micro")
        self.test_confusion_matrix = MulticlassConfusionMatrix(classes)
        self.test_confusion: torch.Tensor | None = None
        # This epoch's training predictions, labels, losses and batch sizes, step by step.
        self._epoch: tuple[list[torch.Tensor], ...] = ([], [], [], [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` of images ``x: (N, C, H, W)``."""
        return self.model(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """``make_optimizer``'s, as the plain loop's: the trained parameters only (not those of
        the layers the spec freezes), their canonical names choosing the decayed weights."""
        return make_optimizer(self.model.canonical_parameters(), self.train_spec)

    def unfreeze(self) -> LitCNN:
        """Lightning's ``unfreeze`` (every parameter ``requires_grad``, training mode), except
        that the layers the spec freezes stay frozen: the spec, not the module, says which
        layers train."""
        super().unfreeze()
        self.model.freeze_spec_layers()
        return self

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Any,
        optimizer_closure: Callable[[], Any] | None = None,
    ) -> None:
        """Each update at the schedule's learning rate of its index in the run, set as the
        plain loop sets it (``set_learning_rate``), so both take the same steps bit for bit.
        ``global_step`` counts this process's updates and is restored on resume; a constant
        rate is left as the optimiser has it, which spares data without a length."""
        if scheduled(self.train_spec):
            steps = self.trainer.num_training_batches
            set_learning_rate(optimizer, self.train_spec, self.trainer.global_step, steps)
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # The data module's (x, y) batches are already on the CPU: skip Lightning's generic walk
        # over the batch there (time on every step); anything else goes the usual way.
        if isinstance(batch, (tuple, list)) and all(
            isinstance(t, torch.Tensor) and t.device == device for t in batch
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout masks depend on (seed, epoch) only, so a resumed run draws the same ones.
        # Seeded at the epoch's first batch, after the DataLoader iterator has drawn its own
        # seed from the global generator.
        if batch_idx == 0 and self.model.has_dropout:
            torch.manual_seed(dropout_seed(self.train_spec.seed, self.current_epoch))

    def _common_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and logits of one ``(x, y)`` batch; updates and logs the stage's metrics
        (training: keeps the step's predictions and loss for the epoch's metrics)."""
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        if stage == "train":
            predictions = logits.argmax(dim=1)
            for kept, value in zip(
                self._epoch, (predictions, y, loss.detach(), y.new_tensor(len(y))), strict=True
            ):
                kept.append(value)
            if self._writes_step_logs():
                batch_accuracy = (predictions == y).float().mean()
                self.log("train_loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
                self.log("train_acc_step", batch_accuracy, on_step=True, on_epoch=False)
        else:
            accuracy: MulticlassAccuracy = getattr(self, f"{stage}_acc")
            accuracy.update(logits, y)
            # batch_size makes the epoch value an exact mean over images when the last batch
            # is short; sync_dist averages over processes under DDP and costs nothing in one.
            self.log(f"{stage}_loss", loss, on_epoch=True, batch_size=len(y), sync_dist=True)
            self.log(f"{stage}_acc", accuracy, on_epoch=True, prog_bar=True)
        return loss, logits

    def _writes_step_logs(self) -> bool:
        """Whether the Trainer writes this training step's logged values to its loggers."""
        return (self.global_step + 1) % self.trainer.log_every_n_steps == 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        """Returns ``loss`` (for the optimiser) and, as Python numbers for callbacks such as the
        run recorder, ``loss_value`` and ``correct`` (images of the batch classified right)."""
        loss, _ = self._common_step(batch, "train")
        correct = (self._epoch[0][-1] == batch[1]).sum()  # the step's predictions
        # One device-to-host copy a step serves the NaN check and the callbacks.
        loss_value, correct_count = torch.stack([loss.detach(), correct.to(loss.dtype)]).tolist()
        check_finite_loss(loss_value, self.current_epoch + 1, batch_idx + 1)
        return {"loss": loss, "loss_value": loss_value, "correct": int(correct_count)}

    def on_train_epoch_start(self) -> None:
        self._epoch = ([], [], [], [])

    def on_train_epoch_end(self) -> None:
        predictions, labels, losses, sizes = self._epoch
        if labels:
            self.train_acc.update(torch.cat(predictions), torch.cat(labels))
            self.train_loss.update(torch.stack(losses), torch.stack(sizes).to(losses[0].dtype))
        self._epoch = ([], [], [], [])
        # Metric objects: Lightning computes (synced under DDP), logs and resets them.
        self.log("train_loss_epoch", self.train_loss)
        self.log("train_acc_epoch", self.train_acc, prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        _, logits = self._common_step(batch, "test")
        self.test_confusion_matrix.update(logits, batch[1])

    def on_test_epoch_end(self) -> None:
        self.test_confusion = self.test_confusion_matrix.compute().cpu()
        self.test_confusion_matrix.reset()

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Class probabilities ``(B, K)`` of a batch ``x`` or ``(x, y)``."""
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return torch.softmax(self(x), dim=1)
