"""Where Keras 3 implements each layer kind, for ``cnn-compare rosetta``: the layer's ``call``
(``keras.layers``), the ``keras.ops`` function it calls and the active backend's version of it
(``keras.src.backend.nn``: TensorFlow's, torch's or jax's, whichever the framework runs on),
the project's own batch normalisation (``keras_cnn.network.BatchNorm``: the spec's
conventions, which Keras's layer does not all have) and optimisers' ``update_step``.
``"module:qualname"`` strings."""

SOURCES: dict[str, list[str]] = {
    "conv": ["keras.layers:Conv2D.call", "keras.ops:conv", "keras.src.backend:nn.conv"],
    "grouped_conv": [
        "keras.layers:Conv2D.convolution_op",
        "keras.ops:conv",
        "keras.src.backend:nn.conv",
    ],
    "batchnorm": [
        "keras_cnn.network:BatchNorm.call",
        "keras_cnn.network:BatchNorm.normalise",
        "keras_cnn.network:BatchNorm.update_statistics",
    ],
    "activation": ["keras.activations:relu", "keras.ops:relu", "keras.src.backend:nn.relu"],
    "pool": [
        "keras.layers:MaxPooling2D.call",
        "keras.ops:max_pool",
        "keras.src.backend:nn.max_pool",
    ],
    "avgpool": [
        "keras.layers:AveragePooling2D.call",
        "keras.ops:average_pool",
        "keras.src.backend:nn.average_pool",
    ],
    "global_avgpool": ["keras.layers:GlobalAveragePooling2D.call", "keras.ops:mean"],
    "add": ["keras.layers:Add._merge_function", "keras.ops:add"],
    "flatten": ["keras.layers:Flatten.call"],
    "dense": ["keras.layers:Dense.call"],
    "dropout": ["keras.layers:Dropout.call", "keras.random:dropout"],
    "loss": [
        "keras_cnn.network:cross_entropy",
        "keras.losses:sparse_categorical_crossentropy",
        "keras.src.backend:nn.sparse_categorical_crossentropy",
    ],
    "adam": ["keras_cnn.optim:TorchAdam.update_step", "keras_cnn.optim:KerasAdam.update_step"],
    "sgd": ["keras_cnn.optim:TorchSGD.update_step"],
    "weight_decay": [
        "keras_cnn.optim:SpecDecay._apply_weight_decay",
        "keras_cnn.optim:SpecDecay._backend_update_step",
        "keras.src.optimizers.base_optimizer:BaseOptimizer._apply_weight_decay",
    ],
    "lr_schedule": [
        "keras_cnn.optim:SpecSchedule.__call__",
        "keras.src.optimizers.base_optimizer:BaseOptimizer._get_current_learning_rate",
        "cnn_common.schedule:learning_rate",
    ],
}
