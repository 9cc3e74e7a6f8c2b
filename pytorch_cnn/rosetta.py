"""Where plain PyTorch implements each layer kind, for ``cnn-compare rosetta``: the project's
modules and the ``torch`` Python code they call (below it, ATen's C++ kernels have no Python
source). ``"module:qualname"`` strings; ``lightning_cnn.rosetta`` reuses them."""

SOURCES: dict[str, list[str]] = {
    "conv": [
        "pytorch_cnn.network:SpecConv2d.forward",
        "torch.nn:Conv2d.forward",
        "torch.nn:Conv2d._conv_forward",
    ],
    "grouped_conv": ["pytorch_cnn.network:SpecConv2d.__init__", "torch.nn:Conv2d._conv_forward"],
    "batchnorm": [
        "pytorch_cnn.network:SpecBatchNorm.forward",
        "pytorch_cnn.network:SpecBatchNorm.update_running_statistics",
        "torch.nn.functional:batch_norm",
    ],
    "activation": ["pytorch_cnn.network:Activation.forward", "torch.nn.functional:relu"],
    "pool": ["torch.nn:MaxPool2d.forward", "torch.nn.functional:_max_pool2d"],
    "avgpool": ["torch.nn:AvgPool2d.forward"],
    "global_avgpool": ["pytorch_cnn.network:GlobalAvgPool.forward"],
    "flatten": ["torch.nn:Flatten.forward"],
    "dense": ["pytorch_cnn.network:SpecLinear.forward", "torch.nn:Linear.forward"],
    "dropout": ["torch.nn:Dropout.forward", "torch.nn.functional:dropout"],
    "add": ["pytorch_cnn.network:Add.forward", "pytorch_cnn.network:CNN.outputs"],
    "loss": ["pytorch_cnn.training:run_epoch", "torch.nn.functional:cross_entropy"],
    "adam": [
        "pytorch_cnn.optim:make_optimizer",
        "torch.optim:Adam.step",
        "torch.optim.adam:_single_tensor_adam",
    ],
    "sgd": [
        "pytorch_cnn.optim:make_optimizer",
        "torch.optim:SGD.step",
        "torch.optim.sgd:_single_tensor_sgd",
    ],
    "weight_decay": [
        "pytorch_cnn.optim:_param_groups",
        "torch.optim.adam:_single_tensor_adam",
        "pytorch_cnn.optim:DecoupledSGD.step",
    ],
    "lr_schedule": ["pytorch_cnn.optim:set_learning_rate", "cnn_common.schedule:learning_rate"],
}
