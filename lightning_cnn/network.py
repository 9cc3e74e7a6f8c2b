"""The network Lightning trains: PyTorch's ``nn.Module`` of the spec, unchanged.

Lightning adds a training loop around a plain PyTorch module, not a network of its own:
``LitCNN`` (``lightning_cnn.module``) holds ``pytorch_cnn.network.CNN`` as ``.model``, so the
two frameworks compute the same forward pass and differ only in what happens around it.
"""

from pytorch_cnn.network import CNN, network_of

__all__ = ["CNN", "network_of"]
