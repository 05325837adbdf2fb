"""On-the-fly augmentation: horizontal flip, small rotation, zoom and shift.

The random draws are *stateless*, keyed by ``(seed, global batch number)``, so a
run resumed from a checkpoint sees exactly the batches an uninterrupted run
would have seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; ``rotation_deg`` and ``shift`` are maxima, ``zoom`` a +- fraction."""

    flip: bool = True
    rotation_deg: float = 10.0
    zoom: float = 0.1
    shift: float = 0.1


def augment_batch(images: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Augment a float32 ``(B, H, W, 1)`` batch with draws keyed by the int64 ``seed`` pair."""
    batch = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 5)
    if config.flip:
        flip = tf.random.stateless_uniform([batch], seeds[0]) < 0.5
        images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
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
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST")
