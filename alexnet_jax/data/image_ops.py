"""The host's image ops (TensorFlow): making a stored square, and crops of stored squares.

Making (once, `make_squares.py`): any image file is decoded (JPEG, also greyscale, CMYK or cut
short; PNG and the other formats TensorFlow reads), its central square is rescaled to R =
resize_size (the paper: the shorter side to 256, then the central 256x256), rounded to uint8 and
stored as a JPEG. Only the central square of a JPEG is decoded.

Streaming (every epoch): a training crop is the S x S window of the stored R x R JPEG at a
random offset, decoded alone (`decode_and_crop_jpeg` skips the rest), mirrored half the time,
and handed on as uint8; evaluation takes the central crop or the 10 views. Randomness comes from
stateless ops keyed by a per-example seed. The float work (colour noise, mean, scale) is done on
the device (alexnet_jax/data/device_preprocess.py).
"""

from __future__ import annotations

import dataclasses

from alexnet_jax import config_schema
from alexnet_jax.data.tf_setup import tf


@dataclasses.dataclass(frozen=True)
class Squaring:
  """How a stored square is made from an original image."""
  resize_size: int
  resize_method: str
  antialias: bool
  quality: int
  truncated_jpeg_fraction: float


def _decode_any(image_bytes, fraction):
  """Any image file to uint8 [h, w, 3]; JPEGs (also greyscale or CMYK) survive truncation."""
  return tf.cond(
      tf.io.is_jpeg(image_bytes),
      lambda: tf.io.decode_jpeg(image_bytes, channels=3, try_recover_truncated=True,
                                acceptable_fraction=fraction),
      # A PNG (or other format) under a .JPEG name, as in the real training set.
      lambda: tf.io.decode_image(image_bytes, channels=3, expand_animations=False))


def central_square(image_bytes, s: Squaring):
  """Float32 [R, R, 3]: the central square of the image rescaled to R = resize_size (0-255)."""
  def jpeg():
    shape = tf.io.extract_jpeg_shape(image_bytes)
    h, w = shape[0], shape[1]
    m = tf.minimum(h, w)
    window = tf.stack([(h - m) // 2, (w - m) // 2, m, m])
    return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3,
                                         try_recover_truncated=True,
                                         acceptable_fraction=s.truncated_jpeg_fraction)

  def other():
    image = _decode_any(image_bytes, s.truncated_jpeg_fraction)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    m = tf.minimum(h, w)
    return image[(h - m) // 2:(h - m) // 2 + m, (w - m) // 2:(w - m) // 2 + m]

  square = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)
  return tf.image.resize(square, [s.resize_size, s.resize_size], method=s.resize_method,
                         antialias=s.antialias)


def rounded_square(image_bytes, s: Squaring):
  """uint8 [R, R, 3]: the image's `central_square`, rounded (the raw squares store it)."""
  return tf.cast(tf.clip_by_value(tf.round(central_square(image_bytes, s)), 0, 255), tf.uint8)


def stored_square(image_bytes, s: Squaring):
  """The stored form of an image: its `rounded_square` as a JPEG."""
  return tf.io.encode_jpeg(rounded_square(image_bytes, s), quality=s.quality)


def train_crop(square_jpeg, seed, resize_size: int, image_size: int, random_crop: bool,
               mirror: bool):
  """uint8 [S, S, 3] from a stored R x R square: the crop at a random offset (or the centre),
  mirrored half the time; `seed` ([2] int64) fixes both. Only the crop's window is decoded."""
  # Split in four as before the colour noise moved to the device: the same seed gives the same
  # crop and mirror as then.
  seeds = tf.random.experimental.stateless_split(seed, 4)
  r, s = resize_size, image_size
  if random_crop:
    offset_y = tf.random.stateless_uniform([], seeds[0], 0, r - s + 1, dtype=tf.int32)
    offset_x = tf.random.stateless_uniform([], seeds[1], 0, r - s + 1, dtype=tf.int32)
  else:
    offset_y = offset_x = tf.constant((r - s) // 2, tf.int32)
  image = tf.image.decode_and_crop_jpeg(square_jpeg, tf.stack([offset_y, offset_x, s, s]),
                                        channels=3)
  image = tf.ensure_shape(image, [s, s, 3])
  if mirror:
    flip = tf.random.stateless_uniform([], seeds[2]) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
  return image


def eval_views(square_jpeg, views: int, resize_size: int, image_size: int):
  """uint8 [views, S, S, 3] from a stored R x R square. 1: the central crop (only its window is
  decoded). 10: the crops at the top-left, top-right, bottom-left and bottom-right corners and
  the centre, then the same five mirrored (paper, section 4.1: softmax is averaged over them)."""
  r, s = resize_size, image_size
  c = (r - s) // 2
  if views == 1:
    crop = tf.image.decode_and_crop_jpeg(square_jpeg, [c, c, s, s], channels=3)
    return tf.ensure_shape(crop, [s, s, 3])[None]
  config_schema.check_value('eval.views', views)
  square = tf.ensure_shape(tf.io.decode_jpeg(square_jpeg, channels=3), [r, r, 3])
  e = r - s
  five = [square[y:y + s, x:x + s] for y, x in ((0, 0), (0, e), (e, 0), (e, e), (c, c))]
  return tf.stack(five + [tf.reverse(v, axis=[1]) for v in five])
