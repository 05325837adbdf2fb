"""Flip-aware training: each image is trained on beside its mirror, and the loss scores the pair's mean probability.

Flip test-time augmentation (the runtime's ``model.tta = "flip"``) reads a face as the mean of the model's
probabilities on the face and on its mirror image. Plain training optimizes each view on its own; here a batch holds
every image followed by its mirror (:func:`mirrored_pairs`), and :class:`FlipPairCrossEntropy` is the cross-entropy
of each pair's mean probability, which is exactly what flip TTA reads. The model itself is unchanged: same layers,
same parameters, same int8 graph.

The loss lives in ``lab`` because a checkpoint records its compiled loss: every loader of a ``.keras`` file
(:func:`lab.keras_io.load_keras_model`, resume) imports this module so that the class is registered.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="fer_edge")
class FlipPairCrossEntropy(keras.losses.Loss):
    """Categorical cross-entropy of the mean probability of rows ``2i`` and ``2i + 1`` (an image and its mirror),
    against row ``2i``'s target; one loss value per pair."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "flip_pair_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        classes = keras.ops.shape(y_pred)[-1]
        pair_mean = keras.ops.mean(keras.ops.reshape(y_pred, (-1, 2, classes)), axis=1)
        targets = keras.ops.reshape(y_true, (-1, 2, classes))[:, 0]
        return keras.losses.categorical_crossentropy(targets, pair_mean, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def mirrored_pairs(images, targets):
    """A batch ``(images, targets)`` as pairs: each image followed by its left-right mirror, each target twice.

    ``images`` is ``(batch, height, width, channels)``; the result has twice the rows, interleaved, as
    :class:`FlipPairCrossEntropy` reads them.
    """
    import tensorflow as tf

    pairs = tf.stack([images, tf.reverse(images, axis=[2])], axis=1)
    return tf.reshape(pairs, tf.concat([[-1], tf.shape(images)[1:]], axis=0)), tf.repeat(targets, 2, axis=0)
