"""Where Lightning implements each layer kind, for ``cnn-compare rosetta``: ``LitCNN``'s
training step and optimiser, around PyTorch's network and optimisers, which it reuses
(``pytorch_cnn.rosetta``) — every layer is PyTorch's own. Lightning's part in batch
normalisation is the switch to evaluation mode (the running statistics) for validation."""

from pytorch_cnn.rosetta import SOURCES as PYTORCH

SOURCES: dict[str, list[str]] = {
    **PYTORCH,
    "conv": ["lightning_cnn.module:LitCNN.forward", *PYTORCH["conv"]],
    "batchnorm": [
        "lightning.pytorch.loops.evaluation_loop:_EvaluationLoop._on_evaluation_model_eval",
        "lightning.pytorch.core.hooks:ModelHooks.on_validation_model_eval",
        *PYTORCH["batchnorm"],
    ],
    "loss": [
        "lightning_cnn.module:LitCNN.training_step",
        "lightning_cnn.module:LitCNN._common_step",
        "torch.nn.functional:cross_entropy",
    ],
    "adam": ["lightning_cnn.module:LitCNN.configure_optimizers", *PYTORCH["adam"]],
    "sgd": ["lightning_cnn.module:LitCNN.configure_optimizers", *PYTORCH["sgd"]],
    "lr_schedule": ["lightning_cnn.module:LitCNN.optimizer_step", *PYTORCH["lr_schedule"]],
}
