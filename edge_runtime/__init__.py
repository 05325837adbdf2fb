"""On-device facial expression recognition runtime (no TensorFlow).

Also home of the pieces every stage of the toolkit shares: the FER2013 label
order (:mod:`edge_runtime.labels`), the one preprocessing function
(:mod:`edge_runtime.preprocessing`) and the project error type
(:mod:`edge_runtime.errors`).
"""

__version__ = "0.1.0"
