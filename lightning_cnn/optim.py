"""The optimisers Lightning steps: PyTorch's, built from the spec by ``make_optimizer``.

``LitCNN.configure_optimizers`` returns ``pytorch_cnn.optim.make_optimizer(...)``: the same
``torch.optim.Adam`` (``AdamW`` under decoupled weight decay; ``KerasAdam`` under the Keras
epsilon convention; ``SGD``, or ``DecoupledSGD``) the plain loop uses, and
``LitCNN.optimizer_step`` sets each update's learning rate with the plain loop's
``set_learning_rate``, so a Lightning run and a plain PyTorch run take the same steps.
"""

from pytorch_cnn.optim import DecoupledSGD, KerasAdam, make_optimizer, set_learning_rate

__all__ = ["DecoupledSGD", "KerasAdam", "make_optimizer", "set_learning_rate"]
