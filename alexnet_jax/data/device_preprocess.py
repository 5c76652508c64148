"""The float work of the paper's input, on the device: PCA colour noise, mean, input scale.

The host hands uint8 crops [B, S, S, 3] (decoded, cropped and mirrored; see alexnet_jax/data) to
the device, a quarter of the bytes of float32; with data.squares_format='raw' it hands whole
uint8 squares [B, R, R, 3] and each example's crop draws, and the crop and mirror are cut here
(`crop_squares`). Inside the jitted train and eval steps they become
the net's input (Krizhevsky et al. 2012, section 4.1):

    x = (crop + V @ (a * s) - mean) * input_scale,   a ~ N(0, pca_std) per image and component

(the noise only in training). The coefficients `a` of an example are drawn from
fold_in(fold_in(fold_in(key(seed), NOISE_STREAM), step), example), where `example` is its row in
the global batch; the global batch of a step is the same on any mesh and any number of
processes, so the numbers are too, and a resumed run draws what an uninterrupted one drew.
No TensorFlow here: this runs where only JAX is installed.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax import config_schema

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
# Folded into key(seed) so that the noise's stream is not the dropout's (which starts from
# key(seed + 1)) nor anything else drawn from the seed.
NOISE_STREAM = 0x5CA1E


@dataclasses.dataclass(frozen=True)
class InputTransform:
  """The numbers that turn uint8 crops into the net's input, resolved from the config."""
  mean: np.ndarray               # [S, S, 3] (mean image's central crop), [3] or [] (0-255 units)
  input_scale: float
  pca_scales: np.ndarray | None  # [3]: component scales (0-255 units); None: no colour noise
  pca_vectors: np.ndarray | None  # [3, 3] eigenvector columns
  pca_std: float                 # std of the per-image, per-component coefficients


def pca_constants(name: str, stats: dict | None) -> tuple[np.ndarray | None, np.ndarray | None]:
  """(per-component scale, eigenvector columns) of the noise `name`, in 0-255 units."""
  config_schema.check_value('data.pca_noise', name)
  if name == 'none':
    return None, None
  if name == 'code':
    return CODE_PCA_STD, CODE_PCA_VECTORS
  if name == 'fb_resnet':
    return 255.0 * FB_RESNET_EIGVAL, FB_RESNET_VECTORS
  return np.asarray(stats['pca_std']), np.asarray(stats['pca_vectors'])  # 'stats'


def _mean(data_config, image_size: int, stats: dict | None) -> np.ndarray:
  config_schema.check_value('data.mean', data_config.mean)
  if data_config.mean == 'image':
    mean_image = np.asarray(stats['mean_image'])
    c = (mean_image.shape[0] - image_size) // 2
    return mean_image[c:c + image_size, c:c + image_size]  # the original code: central crop
  if data_config.mean == 'channel':
    try:
      mean = np.asarray(data_config.channel_mean if data_config.channel_mean is not None
                        else stats['channel_mean'], np.float32)
    except ValueError:
      mean = np.zeros([0], np.float32)  # reported below
    if mean.shape != (3,):
      raise ValueError(f'data.channel_mean={data_config.channel_mean!r}: three numbers (RGB, '
                       '0-255), e.g. (127.30,119.72,104.91), or None for the stats file\'s.')
    return mean
  return np.zeros([], np.float32)  # 'none'


def input_transform(data_config, image_size: int, stats: dict | None) -> InputTransform:
  """Resolves the config (and the stats file's arrays, where it needs them); ValueError saying
  what to write for a setting that cannot work."""
  scales, vectors = pca_constants(data_config.pca_noise, stats)
  return InputTransform(
      mean=np.asarray(_mean(data_config, image_size, stats), np.float32),
      input_scale=float(data_config.input_scale),
      pca_scales=None if scales is None else np.asarray(scales, np.float32),
      pca_vectors=None if vectors is None else np.asarray(vectors, np.float32),
      pca_std=float(data_config.pca_std))


def noise_coefficients(seed: int, step, batch_size: int) -> jax.Array:
  """The N(0, 1) draws behind the colour noise of step `step`: [batch_size, 3], row i keyed by
  (seed, step, i)."""
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), NOISE_STREAM), step)
  rows = jnp.arange(batch_size, dtype=jnp.uint32)
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (3,)))(rows)


def colour_noise(transform: InputTransform, seed: int, step, batch_size: int) -> jax.Array:
  """[batch_size, 3]: the RGB shift V @ (a * s) of each image (0-255 units), a = pca_std *
  the draws of `noise_coefficients`."""
  alpha = noise_coefficients(seed, step, batch_size) * transform.pca_std
  weighted = alpha * jnp.asarray(transform.pca_scales)  # [B, 3]: a * s per component
  # V @ (a * s) per image, written out (3 products and a sum per channel) rather than as a dot,
  # whose order of summation would depend on how the batch is split over devices.
  return jnp.sum(weighted[:, None, :] * jnp.asarray(transform.pca_vectors)[None], axis=-1)


def crop_squares(squares: jax.Array, draws: jax.Array, image_size: int) -> jax.Array:
  """The raw squares path's training crops, cut on the device: uint8 [B, R, R, 3] whole squares
  and int32 [B, 3] draws (offset_y, offset_x, flip; `crop_draws.train_crop_draws`, the very
  numbers `image_ops.train_crop` draws on the JPEG path) -> uint8 [B, S, S, 3], the S x S window
  at the offsets, mirrored where flip is 1. A slice and a select per example: no arithmetic on
  the pixels, so the crops are those of the JPEG path bit for bit (for the same pixels)."""
  def crop(square, draw):
    window = jax.lax.dynamic_slice(square, (draw[0], draw[1], 0), (image_size, image_size, 3))
    return jnp.where(draw[2] > 0, window[:, ::-1], window)
  return jax.vmap(crop)(squares, draws)


def _normalize(images: jax.Array, transform: InputTransform) -> jax.Array:
  return (images - jnp.asarray(transform.mean)) * transform.input_scale


def train_inputs(images: jax.Array, transform: InputTransform, seed: int, step) -> jax.Array:
  """uint8 [B, S, S, 3] -> float32 net inputs with the colour noise of (seed, step, row)."""
  x = images.astype(jnp.float32)
  if transform.pca_scales is not None:
    x = x + colour_noise(transform, seed, step, x.shape[0])[:, None, None, :]
  return _normalize(x, transform)


def eval_inputs(images: jax.Array, transform: InputTransform) -> jax.Array:
  """uint8 [..., S, S, 3] (e.g. [B, views, S, S, 3]) -> float32 net inputs (no noise)."""
  return _normalize(images.astype(jnp.float32), transform)
