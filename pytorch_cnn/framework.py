"""pytorch_cnn's declaration: the plain PyTorch loop as a framework of its own.

Registered in ``pyproject.toml`` under the ``cnn_rosetta.frameworks`` entry points.
"""

from cnn_common.framework import FrameworkInfo

FRAMEWORK = FrameworkInfo(
    name="pytorch",
    label="PyTorch (plain loop)",
    package="pytorch_cnn",
    requires=("torch",),
    extra="torch",
    native={
        "adam_epsilon": "1e-8, added to sqrt(v_hat) (torch.optim.Adam)",
        "init": "Kaiming-uniform(a=sqrt 5) weights, uniform(±1/sqrt(fan_in)) biases",
        "layout": "NCHW, conv weight (F, C, KH, KW)",
        "flatten": "C, H, W",
        "same_padding": "padding='same' for stride 1 (the odd pixel after); none for strides",
        "batch_order": "DataLoader(shuffle=True): a torch.randperm each epoch",
        "loss_logging": "per step (loss.item())",
        "accuracy": "none built in: written by hand",
        "float64": "float64 throughout",
        "kernels": "PyTorch/oneDNN (or cuDNN)",
    },
    model_suffix=".pt",
    native_epsilon=(1e-8, "torch"),
    padding_convention="torch",
    data_parallel=True,
    default=False,
    order=40,
    bench_reference=True,  # the plain loop a PyTorch user writes: the bare minimum
)
