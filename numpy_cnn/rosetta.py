"""Where numpy_cnn implements each layer kind, for ``cnn-compare rosetta``: the forward and
the hand-written backward pass of every layer (the other frameworks derive theirs), and the
optimisers' update rules. ``"module:qualname"`` strings, so nothing is imported to list them;
the page reads each object's source with ``inspect.getsource``. The keys are the layer kinds
of ``cnn_common.spec.Layer``, and ``grouped_conv`` for a convolution with groups."""

SOURCES: dict[str, list[str]] = {
    "conv": [
        "numpy_cnn.ops:conv2d_forward",
        "numpy_cnn.ops:im2col",
        "numpy_cnn.ops:conv2d_backward",
        "numpy_cnn.ops:col2im",
        "numpy_cnn.ops:conv2d_naive",
    ],
    "grouped_conv": [
        "numpy_cnn.grouped:grouped_conv_forward",
        "numpy_cnn.grouped:grouped_conv_backward",
        "numpy_cnn.grouped:grouped_conv_naive",
    ],
    "batchnorm": [
        "numpy_cnn.norm:batchnorm_forward",
        "numpy_cnn.norm:batchnorm_backward",
        "numpy_cnn.norm:running_update",
        "numpy_cnn.network:update_running",
    ],
    "activation": ["numpy_cnn.ops:activation_forward", "numpy_cnn.ops:activation_backward"],
    "pool": [
        "numpy_cnn.pooling:maxpool_forward",
        "numpy_cnn.pooling:_running_max",
        "numpy_cnn.pooling:maxpool_backward",
        "numpy_cnn.fused:conv_pool_forward",
        "numpy_cnn.fused:conv_pool_backward",
    ],
    "avgpool": ["numpy_cnn.pooling:avgpool_forward", "numpy_cnn.pooling:avgpool_backward"],
    "global_avgpool": [
        "numpy_cnn.pooling:global_avgpool_forward",
        "numpy_cnn.pooling:global_avgpool_backward",
    ],
    "add": [
        "numpy_cnn.ops:add_forward",
        "numpy_cnn.ops:add_backward",
        "numpy_cnn.network:_add_into",
    ],
    "flatten": ["numpy_cnn.network:forward", "numpy_cnn.network:backward"],
    "dense": ["numpy_cnn.ops:dense_forward", "numpy_cnn.ops:dense_backward"],
    "dropout": ["numpy_cnn.ops:dropout_forward", "numpy_cnn.ops:dropout_backward"],
    "loss": ["numpy_cnn.ops:softmax_cross_entropy", "numpy_cnn.ops:log_softmax"],
    "adam": ["numpy_cnn.optim:adam", "numpy_cnn.optim:Optimizer.step"],
    "sgd": ["numpy_cnn.optim:sgd_momentum", "numpy_cnn.optim:Optimizer.step"],
    "weight_decay": ["numpy_cnn.optim:Optimizer.step"],
    "lr_schedule": ["numpy_cnn.optim:Optimizer.step", "cnn_common.schedule:learning_rate"],
}
