"""On-device facial expression recognition runtime (no TensorFlow).

:mod:`edge_runtime.core` holds the pieces every stage of the toolkit shares
(label order, errors, preprocessing, model contract, CLI support); the rest of
this package is the runtime itself.
"""

__version__ = "0.1.0"
