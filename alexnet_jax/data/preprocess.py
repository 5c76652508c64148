"""The paper's image preprocessing as TensorFlow ops (Krizhevsky et al. 2012, sections 2 and 4.1).

Every image is treated as if rescaled so its shorter side is `resize_size` and cut to the central
`resize_size` square. Training takes a random `image_size` crop of that square, mirrors it half the
time and adds PCA colour noise; evaluation takes the central crop or 10 views. Values are 0-255 RGB
minus the mean, times `input_scale`. Randomness comes from stateless ops keyed by a per-example
seed, so an example's augmentation depends only on (seed, its position in the stream).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

# The PCA of ImageNet RGB pixels in the original 2012 code (computerhistory/AlexNet-Source-Code),
# 0-255 units: standard deviations (square roots of the eigenvalues) and eigenvectors as columns,
# rows R, G, B. The often-copied [0.2175, 0.0188, 0.0045] are 0-1 variances (~2x weaker noise).
CODE_PCA_STD = np.array([19.72, 37.09, 121.78])
CODE_PCA_VECTORS = np.array([[0.418, -0.713, -0.564],
                             [-0.817, -0.024, -0.576],
                             [0.397, 0.701, -0.592]])
# fb.resnet.torch's `Lighting` constants: eigenvalues of 0-1 RGB and eigenvector columns; it adds
# eigvec @ (alpha * eigval) to 0-1 images, i.e. 255 times that in our 0-255 units.
FB_RESNET_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
FB_RESNET_VECTORS = np.array([[-0.5675, 0.7192, 0.4009],
                              [-0.5808, -0.0045, -0.8140],
                              [-0.5836, -0.6948, 0.4203]])


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """Everything the image ops need, resolved from the config and the stats file."""
  image_size: int
  resize_size: int
  resize_method: str
  antialias: bool
  random_crop: bool
  mirror: bool
  fused_decode_crop: bool
  mean: np.ndarray            # [image_size, image_size, 3] or [3] or [] (0-255 units)
  pca_scales: np.ndarray | None  # [3]: component scales (0-255 units); None: no colour noise
  pca_vectors: np.ndarray | None  # [3, 3] eigenvector columns
  pca_std: float
  input_scale: float
  truncated_jpeg_fraction: float


def pca_constants(name: str, stats: dict | None) -> tuple[np.ndarray | None, np.ndarray | None]:
  """(per-component scale, eigenvector columns) of the noise `name`, in 0-255 units."""
  if name == 'none':
    return None, None
  if name == 'code':
    return CODE_PCA_STD, CODE_PCA_VECTORS
  if name == 'fb_resnet':
    return 255.0 * FB_RESNET_EIGVAL, FB_RESNET_VECTORS
  if name == 'stats':
    return np.asarray(stats['pca_std']), np.asarray(stats['pca_vectors'])
  raise ValueError(f"data.pca_noise must be 'code', 'fb_resnet', 'stats' or 'none', got {name!r}")


def _decode_jpeg_window(image_bytes, window, fraction):
  return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3, try_recover_truncated=True,
                                      acceptable_fraction=fraction)


def _decode_any(image_bytes, fraction):
  """Any image file to uint8 [h, w, 3]; JPEGs (also greyscale or CMYK) survive truncation."""
  return tf.cond(
      tf.io.is_jpeg(image_bytes),
      lambda: tf.io.decode_jpeg(image_bytes, channels=3, try_recover_truncated=True,
                                acceptable_fraction=fraction),
      # A PNG (or other format) under a .JPEG name, as in the real training set.
      lambda: tf.io.decode_image(image_bytes, channels=3, expand_animations=False))


def _resize(image, size, p: Preprocessing):
  return tf.image.resize(image, size, method=p.resize_method, antialias=p.antialias)


def central_square(image_bytes, p: Preprocessing):
  """Float32 [R, R, 3]: the shorter side scaled to R = resize_size and the central square.

  Only the central square of a JPEG is decoded.
  """
  def jpeg():
    shape = tf.io.extract_jpeg_shape(image_bytes)
    h, w = shape[0], shape[1]
    m = tf.minimum(h, w)
    window = tf.stack([(h - m) // 2, (w - m) // 2, m, m])
    return _decode_jpeg_window(image_bytes, window, p.truncated_jpeg_fraction)

  def other():
    image = _decode_any(image_bytes, p.truncated_jpeg_fraction)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    m = tf.minimum(h, w)
    return image[(h - m) // 2:(h - m) // 2 + m, (w - m) // 2:(w - m) // 2 + m]

  square = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)
  return _resize(square, [p.resize_size, p.resize_size], p)


def _fused_crop(image_bytes, offset_y, offset_x, p: Preprocessing):
  """The crop at (offset_y, offset_x) of the resized square, decoding only its source window."""
  r, s = p.resize_size, p.image_size

  def jpeg():
    shape = tf.io.extract_jpeg_shape(image_bytes)
    h, w = shape[0], shape[1]
    m = tf.minimum(h, w)
    scale = tf.cast(m, tf.float32) / r  # source pixels per resized pixel

    def span(offset, start):
      lo = tf.cast(tf.floor(tf.cast(offset, tf.float32) * scale), tf.int32)
      hi = tf.cast(tf.math.ceil(tf.cast(offset + s, tf.float32) * scale), tf.int32)
      lo = tf.clip_by_value(lo, 0, m - 1)
      hi = tf.clip_by_value(hi, lo + 1, m)
      return start + lo, hi - lo

    y, hh = span(offset_y, (h - m) // 2)
    x, ww = span(offset_x, (w - m) // 2)
    window = tf.stack([y, x, hh, ww])
    return _resize(_decode_jpeg_window(image_bytes, window, p.truncated_jpeg_fraction), [s, s], p)

  def other():
    return central_square(image_bytes, p)[offset_y:offset_y + s, offset_x:offset_x + s]

  return tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)


def _normalize(image, p: Preprocessing):
  """0-255 RGB minus the mean, times input_scale."""
  return (image - tf.constant(p.mean, tf.float32)) * p.input_scale


def train_image(image_bytes, seed, p: Preprocessing):
  """One training image, float32 [S, S, 3]; `seed` ([2] int64) fixes crop, mirror and noise."""
  seeds = tf.random.experimental.stateless_split(seed, 4)
  r, s = p.resize_size, p.image_size
  if p.random_crop:
    offset_y = tf.random.stateless_uniform([], seeds[0], 0, r - s + 1, dtype=tf.int32)
    offset_x = tf.random.stateless_uniform([], seeds[1], 0, r - s + 1, dtype=tf.int32)
  else:
    offset_y = offset_x = tf.constant((r - s) // 2, tf.int32)
  if p.fused_decode_crop:
    image = _fused_crop(image_bytes, offset_y, offset_x, p)
  else:
    image = central_square(image_bytes, p)[offset_y:offset_y + s, offset_x:offset_x + s]
  image = tf.ensure_shape(image, [s, s, 3])
  if p.mirror:
    flip = tf.random.stateless_uniform([], seeds[2]) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
  if p.pca_scales is not None:
    # Paper, section 4.1: add V @ (a * s) to every pixel, a ~ N(0, pca_std) per image and component.
    alpha = tf.random.stateless_normal([3], seeds[3]) * p.pca_std
    noise = tf.linalg.matvec(tf.constant(p.pca_vectors, tf.float32),
                             alpha * tf.constant(p.pca_scales, tf.float32))
    image = image + noise
  return _normalize(image, p)


def eval_views(image_bytes, views: int, p: Preprocessing):
  """Float32 [views, S, S, 3]. 1: the central crop. 10: the crops at the top-left, top-right,
  bottom-left and bottom-right corners and the centre of the resized square, then the same five
  mirrored (paper, section 4.1: softmax is averaged over them)."""
  r, s = p.resize_size, p.image_size
  square = central_square(image_bytes, p)
  c = (r - s) // 2
  if views == 1:
    crops = [square[c:c + s, c:c + s]]
  elif views == 10:
    e = r - s
    five = [square[y:y + s, x:x + s] for y, x in ((0, 0), (0, e), (e, 0), (e, e), (c, c))]
    crops = five + [tf.reverse(v, axis=[1]) for v in five]
  else:
    raise ValueError(f'views must be 1 or 10, got {views}')
  return _normalize(tf.stack(crops), p)
