"""lightning_cnn's declaration: what compare and the report need to know about it.

Lightning trains PyTorch's own network with PyTorch's optimiser, so the declaration is
PyTorch's (``pytorch_cnn.framework``) but for what the Trainer and torchmetrics change.
Registered in ``pyproject.toml`` under the ``cnn_rosetta.frameworks`` entry points.
"""

import dataclasses

from cnn_common.conventions import Convention
from pytorch_cnn.framework import FRAMEWORK as PYTORCH

FRAMEWORK = dataclasses.replace(
    PYTORCH,
    name="lightning",
    label="PyTorch Lightning",
    package="lightning_cnn",
    requires=("torch", "lightning", "torchmetrics"),
    extra="lightning",
    native={
        **PYTORCH.native,
        "batch_order": "DataLoader(shuffle=True) / DistributedSampler",
        "loss_logging": "per step (self.log on_step)",
        "accuracy": "torchmetrics MulticlassAccuracy: macro by default",
        "float64": "float64 throughout (parameters created in the spec's dtype)",
    },
    conventions={
        **PYTORCH.conventions,
        "schedule": Convention(
            {"lr_interval": "epoch"},
            "configure_optimizers' lr_scheduler config: interval='epoch' by default, one "
            "scheduler.step() per epoch",
            "https://lightning.ai/docs/pytorch/stable/common/lightning_module.html"
            "#configure-optimizers",
        ),
    },
    model_suffix=".ckpt",
    default=True,
    order=30,
    bench_reference=False,
)
