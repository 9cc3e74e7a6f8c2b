"""lightning_cnn's declaration: what compare and the report need to know about it.

Registered in ``pyproject.toml`` under the ``cnn_rosetta.frameworks`` entry points.
"""

from cnn_common.framework import FrameworkInfo

FRAMEWORK = FrameworkInfo(
    name="lightning",
    label="PyTorch Lightning",
    package="lightning_cnn",
    requires=("torch", "lightning", "torchmetrics"),
    extra="lightning",
    native={
        "adam_epsilon": "1e-8, added to sqrt(v_hat) (torch.optim.Adam)",
        "init": "Kaiming-uniform(a=sqrt 5) weights, uniform(±1/sqrt(fan_in)) biases",
        "layout": "NCHW, conv weight (F, C, KH, KW)",
        "flatten": "C, H, W",
        "same_padding": "padding='same' for stride 1 (the odd pixel after); none for strides",
        "batch_order": "DataLoader(shuffle=True) / DistributedSampler",
        "loss_logging": "per step (self.log on_step)",
        "accuracy": "torchmetrics MulticlassAccuracy: macro by default",
        "float64": "float64 throughout (parameters created in the spec's dtype)",
        "kernels": "PyTorch/oneDNN (or cuDNN)",
    },
    model_suffix=".ckpt",
    native_epsilon=(1e-8, "torch"),
    padding_convention="torch",
    data_parallel=True,
    default=True,
    order=30,
)
