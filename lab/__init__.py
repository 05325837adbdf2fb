"""What training and conversion both use on the desktop, below both: FER2013 loading (:mod:`lab.data`), Keras model
files (:mod:`lab.keras_io`), the explicit-LSTM rebuild and the int8 simulation (:mod:`lab.explicit_lstm`,
:mod:`lab.quantization`), the calibration set (:mod:`lab.calibration`), metrics and plots, and provenance.

``fer-train`` (:mod:`train`) and ``fer-convert`` (:mod:`convert`) import from here and never from each other.
"""
