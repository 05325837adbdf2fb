"""Conversion of trained Keras models to verified TFLite."""
