"""Train the frameworks side by side, check their parity, time them and report.

``cnn-compare COMMAND``: the commands are features (``compare.run``, ``compare.parity``,
``compare.bench``, ...), each one sub-package registered under the ``cnn_rosetta.features``
entry points, on one engine (``compare.engine``). A framework package is imported only when
that framework is used, and by default each runs in its own process
(``compare.engine.worker``), so TensorFlow and PyTorch never share a process and timings stay
fair.
"""
