"""The ``lightning-cnn`` LightningCLI: ``fit``, ``validate``, ``test``, ``predict``.

``lightning-cnn fit`` with no options trains the seed run (the seed model, Adam 1e-3, 5 epochs,
batch 128, seed 0) on MNIST. Settings come from ``--config FILE`` and ``--section.key value``
options; ``--print_config`` shows them all. The training settings live in one place,
``model.train_spec``; the data module's batch size, seed, split, augmentation and dtype and
the Trainer's ``max_epochs`` are linked to it. Checkpoints go to
``<trainer.default_root_dir>/checkpoints`` (``last.ckpt`` included), so ``--ckpt_path last``
resumes a killed ``fit``; logs to ``csv_logs/`` and ``tensorboard/`` beside it, and
``predict`` writes ``predictions.npz`` (probabilities and classes of the test images) there.

Several processes: ``--trainer.devices 2 --trainer.strategy ddp`` (each takes its share of
the shared batch order; the sampler is ours, hence ``use_distributed_sampler=False``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from jsonargparse.typing import register_type
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from cnn_common.errors import UserError
from cnn_common.files import CHECKPOINT_DIR
from cnn_common.memory import check_training, human
from cnn_common.spec import COMMON_FIELDS, KIND_FIELDS, ConvBlock, DenseLayer, LayerSpec, TrainSpec
from lightning_cnn.callbacks import PredictionWriter, make_loggers
from lightning_cnn.datamodule import ImageDataModule
from lightning_cnn.framework import FRAMEWORK
from lightning_cnn.module import LitCNN

PROG = "lightning-cnn"
DEFAULT_ROOT = "runs/lightning"
DESCRIPTION = (
    "Train and evaluate the cnn-rosetta CNN with Lightning. `lightning-cnn fit` trains the seed "
    "run; see `lightning-cnn fit --print_config` for every setting. `lightning-cnn train` "
    "(not listed below) takes the flags all cnn-rosetta trainers share and writes the run "
    "record that cnn-compare reads."
)
LINKED_TRAIN_FIELDS = ("batch_size", "seed", "validation_size", "augment_shift", "dtype")


def _register_spec_blocks() -> None:
    """Let jsonargparse print and read the nested spec blocks (tuples of frozen dataclasses)
    as plain mappings; without this ``--print_config`` cannot serialise the defaults."""
    for cls in (ConvBlock, DenseLayer):
        register_type(
            cls,
            serializer=dataclasses.asdict,
            deserializer=lambda value, cls=cls: value if isinstance(value, cls) else cls(**value),
        )


def _layer_fields(layer: LayerSpec) -> dict[str, Any]:
    """A layer-list item as a mapping of the fields its kind takes (and its name and input
    where set), as a spec file writes it."""
    fields = (*COMMON_FIELDS, *KIND_FIELDS[layer.kind])
    return {f: getattr(layer, f) for f in fields if getattr(layer, f) != "" or f == "kind"}


def _register_layer_list() -> None:
    """Let jsonargparse print and read a layer list (``model.model_spec.layers``)."""
    register_type(
        LayerSpec,
        serializer=_layer_fields,
        deserializer=lambda value: value if isinstance(value, LayerSpec) else LayerSpec(**value),
    )


class SpecArgumentParser(LightningArgumentParser):
    """Writes the model spec in its one form, as spec files and
    ``cnn_common.spec.spec_to_dict`` write it (``--print_config`` and the saved config): the
    blocks without an empty layer list, or the layer list without the blocks."""

    def dump(self, cfg: Any, *args: Any, **kwargs: Any) -> str:
        spec = "model.model_spec"
        if f"{spec}.layers" in cfg:
            cfg = cfg.clone()
            unused = ("conv", "dense") if cfg[f"{spec}.layers"] else ("layers",)
            for field in unused:
                del cfg[f"{spec}.{field}"]
        return super().dump(cfg, *args, **kwargs)


def checkpoint_dir(root: str | None) -> str:
    """Where the CLI's checkpoints go: ``<default_root_dir>/checkpoints``."""
    return str(Path(root or ".") / CHECKPOINT_DIR)


class CNNLightningCLI(LightningCLI):
    """LightningCLI with the spec linked to the data module and Trainer, a per-epoch
    checkpoint with ``last.ckpt``, and CSV (plus TensorBoard) loggers."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
            }
        )
        parser.link_arguments("trainer.default_root_dir", "checkpoint.dirpath", checkpoint_dir)
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.link_arguments(
            "trainer.default_root_dir", "prediction_writer.output_dir", lambda root: root or "."
        )
        for name in LINKED_TRAIN_FIELDS:
            parser.link_arguments(f"model.train_spec.{name}", f"data.{name}")
        parser.link_arguments("model.train_spec.epochs", "trainer.max_epochs")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        # logger: true (the default) -> our CSV (+ TensorBoard) loggers in default_root_dir.
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True):
            kwargs["logger"] = make_loggers(config.get("default_root_dir") or ".")
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        """Refuse (``UserError``) a fit whose spec would not fit in the memory available now,
        on as many processes as the Trainer starts here, before the data are read or a batch
        allocates; show the estimate (``cnn_common.memory``, as ``lightning-cnn train`` does)."""
        model, devices = self.model, self.trainer.num_devices
        need, free = check_training(FRAMEWORK, model.model_spec, model.train_spec, devices)
        if self.trainer.is_global_zero:
            room = f"; {human(free)} available" if free is not None else ""
            print(f"{PROG}: memory (estimate) {need.describe()}{room}", flush=True)


def check_checkpoint_argument(args: list[str]) -> None:
    """Refuse a ``--ckpt_path`` file that is missing or no checkpoint, with a message, before
    LightningCLI fails on it with a traceback (``last``, ``best`` and the like pass)."""
    path = None
    for i, arg in enumerate(args):
        if arg == "--ckpt_path" and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--ckpt_path="):
            path = arg.split("=", 1)[1]
    if path is None or path in ("last", "best", "hpc", "registry", "null"):
        return
    try:
        torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise UserError(f"--ckpt_path {path} does not exist", "check the path") from None
    except Exception as exc:  # noqa: BLE001 - whatever torch cannot read is not a checkpoint
        raise UserError(
            f"--ckpt_path {path} is not a readable checkpoint ({type(exc).__name__})",
            "give a .ckpt written by lightning-cnn fit or a Trainer, or `last`",
        ) from None


def cli_main(args: list[str] | None = None) -> CNNLightningCLI:
    """Run the LightningCLI on ``args`` (None: the command line)."""
    _register_spec_blocks()
    _register_layer_list()
    return CNNLightningCLI(
        LitCNN,
        ImageDataModule,
        parser_class=SpecArgumentParser,
        seed_everything_default=TrainSpec().seed,
        trainer_defaults={
            "default_root_dir": DEFAULT_ROOT,
            "use_distributed_sampler": False,  # ImageDataModule shards the shared batch order
        },
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # the optimiser comes from model.train_spec alone
        parser_kwargs={"prog": PROG, "description": DESCRIPTION},
        args=args,
    )
