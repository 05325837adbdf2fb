"""On-the-fly augmentation: photometric jitter, flip, rotation, zoom, shift, blur, random erasing and mixup.

The random draws are *stateless*, keyed by ``(seed, global batch number)``, so a
run resumed from a checkpoint sees exactly the batches an uninterrupted run
would have seen. Images are raw 0..255 grayscale pixels, as the models take them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge_runtime.core.records import JsonRecord


@dataclass(frozen=True)
class AugmentConfig(JsonRecord):
    """Augmentation strengths.

    ``rotation_deg`` and ``shift`` (a fraction of the side) are maxima, ``zoom``
    a +- fraction. ``brightness`` (a fraction of 255) and ``contrast`` (a +-
    fraction about the image mean) are maxima of a uniform draw. Random erasing
    replaces, with probability ``erase_probability``, one rectangle covering
    ``erase_area`` (min, max fraction of the image) with uniform noise. ``blur``
    is the largest Gaussian sigma (pixels at 48x48) applied, with probability
    ``blur_probability``, to an image: a camera's soft focus and motion, which
    the placed-face benchmark shows the model is not robust to. ``mixup`` (applied by
    :func:`mixup_batch`, after the rest) blends pairs of images and their labels.
    """

    flip: bool = True
    rotation_deg: float = 10.0
    zoom: float = 0.1
    shift: float = 0.1
    brightness: float = 0.0
    contrast: float = 0.0
    erase_probability: float = 0.0
    erase_area: tuple[float, float] = (0.02, 0.2)
    blur: float = 0.0
    blur_probability: float = 0.5
    mixup: float = 0.0  # > 0: mixup's Beta(mixup, mixup) weight per image (Zhang et al. 2018), images and targets


def mixup_batch(images, targets, seed, alpha: float):
    """Mix each image and its target with the next image of the batch (the batch is already shuffled), with a
    weight drawn per image from Beta(alpha, alpha), keyed by the int64 ``seed`` pair like :func:`augment_batch`.

    Teachers see the mixed images (their predictions are made on these very batches), so a student's soft targets
    are the teachers' view of the mixture, and its hard targets the mixture of the two labels.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, 2)
    batch = tf.shape(images)[0]
    first = tf.random.stateless_gamma([batch], seeds[0], alpha)
    second = tf.random.stateless_gamma([batch], seeds[1], alpha)
    weight = first / tf.maximum(first + second, 1e-12)  # a Beta(alpha, alpha) draw
    mixed = weight[:, None, None, None] * images + (1.0 - weight[:, None, None, None]) * tf.roll(images, 1, axis=0)
    return mixed, weight[:, None] * targets + (1.0 - weight[:, None]) * tf.roll(targets, 1, axis=0)


def _photometric(images, seeds, config: AugmentConfig):
    import tensorflow as tf

    batch = tf.shape(images)[0]
    if config.contrast > 0:
        factor = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[0], 1.0 - config.contrast, 1.0 + config.contrast)
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * factor + mean
    if config.brightness > 0:
        offset = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[1], -config.brightness, config.brightness)
        images = images + 255.0 * offset
    return tf.clip_by_value(images, 0.0, 255.0)


def _blur(images, seeds, config: AugmentConfig):
    """Gaussian blur with one sigma per image, uniform in 0..``blur``, for a random ``blur_probability`` share."""
    import tensorflow as tf

    batch = tf.shape(images)[0]
    sigma = tf.random.stateless_uniform([batch], seeds[0], 0.0, config.blur) + 1e-3
    offsets = tf.range(-3.0, 4.0)  # a 7-tap kernel covers sigma 1.5 to within 2 sigma
    weights = tf.exp(-(offsets[None, :] ** 2) / (2.0 * sigma[:, None] ** 2))
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)  # (batch, 7)
    padded = tf.pad(images, [[0, 0], [3, 3], [3, 3], [0, 0]], mode="SYMMETRIC")
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    # Separable: rows, then columns, each a weighted sum of 7 shifted copies with the image's own weights.
    rows = tf.add_n([weights[:, k, None, None, None] * padded[:, k:k + height, :, :] for k in range(7)])
    blurred = tf.add_n([weights[:, k, None, None, None] * rows[:, :, k:k + width, :] for k in range(7)])
    chosen = tf.random.stateless_uniform([batch], seeds[1]) < config.blur_probability
    return tf.where(chosen[:, None, None, None], blurred, images)


def _random_erase(images, seeds, config: AugmentConfig):
    """Random erasing (Zhong et al. 2020): one noise-filled rectangle per chosen image."""
    import tensorflow as tf

    shape = tf.shape(images)
    batch, height, width = shape[0], tf.cast(shape[1], tf.float32), shape[2]
    low, high = config.erase_area
    area = tf.random.stateless_uniform([batch], seeds[0], low, high) * height * tf.cast(width, tf.float32)
    log_ratio = tf.random.stateless_uniform([batch], seeds[1], math.log(0.3), math.log(1 / 0.3))
    box_h = tf.minimum(tf.sqrt(area * tf.exp(log_ratio)), height)
    box_w = tf.minimum(tf.sqrt(area / tf.exp(log_ratio)), tf.cast(width, tf.float32))
    top = tf.random.stateless_uniform([batch], seeds[2]) * (height - box_h)
    left = tf.random.stateless_uniform([batch], seeds[3]) * (tf.cast(width, tf.float32) - box_w)
    chosen = tf.random.stateless_uniform([batch], seeds[4]) < config.erase_probability
    rows = tf.range(height)[None, :, None]
    columns = tf.cast(tf.range(width), tf.float32)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + box_h)[:, None, None]) &
              (columns >= left[:, None, None]) & (columns < (left + box_w)[:, None, None]) & chosen[:, None, None])
    noise = tf.random.stateless_uniform(shape, seeds[5], 0.0, 255.0)
    return tf.where(inside[..., None], noise, images)


def augment_batch(images, seed, config: AugmentConfig):
    """Augment a float32 ``(B, H, W, 1)`` tensor batch with draws keyed by the int64 ``seed`` tensor pair."""
    import tensorflow as tf  # here, not at the top: the CLI reads AugmentConfig without loading TensorFlow

    batch = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 7)
    if config.flip:
        flip = tf.random.stateless_uniform([batch], seeds[0], dtype=tf.float32) < 0.5
        images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    if config.brightness > 0 or config.contrast > 0:
        images = _photometric(images, tf.random.experimental.stateless_split(seeds[5], 2), config)
    max_angle = math.radians(config.rotation_deg)
    angle = tf.random.stateless_uniform([batch], seeds[1], -max_angle, max_angle)
    zoom = tf.random.stateless_uniform([batch], seeds[2], 1.0 - config.zoom, 1.0 + config.zoom)
    shift_x = tf.random.stateless_uniform([batch], seeds[3], -config.shift, config.shift) * width
    shift_y = tf.random.stateless_uniform([batch], seeds[4], -config.shift, config.shift) * height
    # Output pixel (x, y) samples input  c + R(angle) (p - c) / zoom + shift  (rotation and zoom about the centre).
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    a0 = tf.cos(angle) / zoom
    a1 = -tf.sin(angle) / zoom
    b0 = tf.sin(angle) / zoom
    b1 = tf.cos(angle) / zoom
    a2 = cx - a0 * cx - a1 * cy + shift_x
    b2 = cy - b0 * cx - b1 * cy + shift_y
    zeros = tf.zeros_like(angle)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST")
    if config.blur > 0:  # after the geometry: the blur of the camera, not of the source image
        images = _blur(images, tf.random.experimental.stateless_split(seeds[6], 8)[6:], config)
    if config.erase_probability > 0:
        images = _random_erase(images, tf.random.experimental.stateless_split(seeds[6], 6), config)
    return images
