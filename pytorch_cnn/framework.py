"""pytorch_cnn's declaration: the plain PyTorch loop as a framework of its own.

Registered in ``pyproject.toml`` under the ``cnn_rosetta.frameworks`` entry points.
"""

from cnn_common.conventions import Convention
from cnn_common.framework import FrameworkInfo
from cnn_common.gpu import GPU_CONVENTIONS

DOCS = "https://pytorch.org/docs/stable"
BATCHNORM_DOCS = f"{DOCS}/generated/torch.nn.BatchNorm2d.html"
# What a PyTorch user gets without saying otherwise (the spec's defaults are these, but for
# the schedule's interval, which the spec counts per epoch too).
CONVENTIONS = {
    "epsilon": Convention(
        {"epsilon": 1e-8, "epsilon_convention": "torch"},
        "torch.optim.Adam(eps=1e-8): p -= lr * m_hat / (sqrt(v_hat) + eps)",
        f"{DOCS}/generated/torch.optim.Adam.html",
    ),
    "bn_momentum": Convention(
        {"momentum": 0.1, "momentum_convention": "torch"},
        "BatchNorm2d(momentum=0.1): running = (1 - momentum) * running + momentum * batch",
        BATCHNORM_DOCS,
    ),
    "bn_epsilon": Convention(
        {"epsilon": 1e-5},
        "BatchNorm2d(eps=1e-5): y = (x - mean) / sqrt(var + eps) * weight + bias",
        BATCHNORM_DOCS,
    ),
    "bn_variance": Convention(
        {"variance": "unbiased"},
        "running_var is updated with the batch's unbiased variance, var * n / (n - 1) "
        "(training normalises with the biased one)",
        BATCHNORM_DOCS,
    ),
    "frozen_bn": Convention(
        {"frozen_batchnorm": "batch"},
        "requires_grad_(False) freezes weight and bias only: in model.train() the layer still "
        "normalises with the batch and updates running_mean and running_var",
        f"{DOCS}/notes/autograd.html#locally-disabling-gradient-computation",
    ),
    "weight_decay": Convention(
        {"weight_decay_convention": "l2", "weight_decay_on": "all"},
        "torch.optim.Adam(weight_decay=wd): g = g + wd * p, on every parameter it is given "
        "(AdamW: p = p - lr * wd * p)",
        f"{DOCS}/generated/torch.optim.Adam.html",
    ),
    "schedule": Convention(
        {"lr_interval": "epoch"},
        "scheduler.step() once per epoch, after the epoch's optimizer.step() calls",
        f"{DOCS}/optim.html#how-to-adjust-learning-rate",
    ),
    **GPU_CONVENTIONS["torch"],  # TF32 and deterministic kernels on a GPU (cnn_common.gpu)
}

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
    conventions=CONVENTIONS,
    padding_convention="torch",
    data_parallel=True,
    default=False,
    order=40,
    bench_reference=True,  # the plain loop a PyTorch user writes: the bare minimum
)
