"""The small core every stage shares: the FER2013 label order, the error types, the one preprocessing function,
the model contract (the sidecar a converted model carries) and the CLI error handling.

It imports nothing else of the project: ``convert`` -> ``train`` -> ``core`` <- the rest of ``edge_runtime``
(contracts in ``.importlinter``, checked by the test suite).
"""
