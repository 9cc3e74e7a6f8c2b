"""The optimisers Lightning steps: PyTorch's, built from the spec by ``make_optimizer``.

``LitCNN.configure_optimizers`` returns ``pytorch_cnn.optim.make_optimizer(...)``: the same
``torch.optim.Adam`` (or ``KerasAdam`` under the Keras epsilon convention, or ``SGD``) the plain
loop uses, so a Lightning run and a plain PyTorch run take the same steps.
"""

from pytorch_cnn.optim import KerasAdam, make_optimizer

__all__ = ["KerasAdam", "make_optimizer"]
