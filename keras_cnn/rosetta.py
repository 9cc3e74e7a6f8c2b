"""Where Keras 3 implements each layer kind, for ``cnn-compare rosetta``: the layer's ``call``
(``keras.layers``), the ``keras.ops`` function it calls and the active backend's version of it
(``keras.src.backend.nn``: TensorFlow's, torch's or jax's, whichever the framework runs on),
and the project's optimisers' ``update_step``. ``"module:qualname"`` strings."""

SOURCES: dict[str, list[str]] = {
    "conv": ["keras.layers:Conv2D.call", "keras.ops:conv", "keras.src.backend:nn.conv"],
    "activation": ["keras.activations:relu", "keras.ops:relu", "keras.src.backend:nn.relu"],
    "pool": [
        "keras.layers:MaxPooling2D.call",
        "keras.ops:max_pool",
        "keras.src.backend:nn.max_pool",
    ],
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
}
