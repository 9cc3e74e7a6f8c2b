"""Train the three implementations side by side, check their parity and report.

``cnn-compare run | parity | bench | report``. A framework package is imported only when that
framework is used, and by default each runs in its own process (``compare.worker``), so
TensorFlow and PyTorch never share a process and timings stay fair.
"""
