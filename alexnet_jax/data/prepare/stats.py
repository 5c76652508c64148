"""Per-pixel mean image and RGB PCA of a training split, from its stored squares.

`python -m alexnet_jax.data.prepare` computes them after making the squares;
`python -m alexnet_jax.data.stats` (its entry is alexnet_jax/data/stats.py) computes them again
(e.g. with data.stats_max_examples). The images are the stored resize_size x resize_size
squares (0-255 RGB), as the paper's mean image was taken over its 256x256 training images. The
PCA is of all RGB pixel values of those images: `pca_std` are the square roots of the
covariance's eigenvalues (ascending, like the original code's [19.72, 37.09, 121.78]),
`pca_vectors` its eigenvectors as columns. Undecodable images are skipped, counted and listed.
Raw squares (data.squares_format='raw') are read with NumPy, JPEG ones decoded with tf.data.
"""

from __future__ import annotations

import time

import numpy as np
from alexnet_jax.data.tf_setup import plain, tf

from alexnet_jax.data import locations
from alexnet_jax.data import raw_squares
from alexnet_jax.data import sources
from alexnet_jax.data import stats_file
from alexnet_jax.data import undecodable
from alexnet_jax.data.dataset import open_dataset
from alexnet_jax.data.errors import DatasetError


# Images per batch of the pass (either format).
_BATCH = 64


def _jpeg_batches(dataset, segments, r: int):
  """(uint8 [B, R, R, 3] squares or zeros, decoded? [B], descriptions of the undecodable ones)
  of the JPEG squares of `segments`, in order."""
  def decode(image, label, name, segment, position):
    del label
    decoded = tf.strings.length(image) > 0
    square = tf.cond(decoded, lambda: tf.ensure_shape(tf.io.decode_jpeg(image, channels=3),
                                                      [r, r, 3]),
                     lambda: tf.zeros([r, r, 3], tf.uint8))
    return square, decoded, segment, position, name

  batches = (sources.read_in_order(dataset.stored, segments)
             .map(plain(decode), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
             .batch(_BATCH).prefetch(2))
  for images, decoded, ids, positions, names in batches.as_numpy_iterator():
    skipped = [undecodable.describe(segments[ids[i]].split, int(positions[i]),
                                    names[i].decode(errors='replace'))
               for i in np.flatnonzero(~decoded)]
    yield images, decoded, skipped


def _raw_batches(dataset, segments, r: int):
  """As `_jpeg_batches`, of raw squares: their pixels, gathered with NumPy (no decoding); the
  names of the undecodable ones are the manifest's."""
  del r
  source = dataset.stored
  for segment in segments:
    rows = source.rows(segment.key, segment.start, segment.count)
    for lo in range(0, len(rows), _BATCH):
      batch = rows[lo:lo + _BATCH]
      decoded = source.decoded(batch)
      positions = segment.position + lo + np.flatnonzero(~decoded)
      skipped = [undecodable.describe(segment.split, int(p),
                                      dataset.undecodable.get((segment.split, int(p)), ''))
                 for p in positions]
      yield source.gather(batch), decoded, skipped


def compute(data_config, *, max_examples: int = 0, log=print) -> dict[str, np.ndarray]:
  """The stats of data_config.train_split (the first `max_examples` examples if > 0), from
  either format of its squares (the same images, so the same stats up to JPEG's error)."""
  dataset = open_dataset(data_config)
  segments = dataset.stored_train  # one pass: straight from the files, whatever data.cache says
  if max_examples > 0:
    segments = sources.cut(segments, 0, max_examples)
  r = int(data_config.resize_size)
  raw = isinstance(dataset.stored, raw_squares.RawSquaresSource)
  total = np.zeros([r, r, 3], np.float64)
  pixel_sum = np.zeros([3], np.float64)
  pixel_outer = np.zeros([3, 3], np.float64)
  n, skipped = 0, []
  start = time.time()
  for images, decoded, batch_skipped in (_raw_batches if raw else _jpeg_batches)(
      dataset, segments, r):
    skipped += batch_skipped
    batch = images[decoded].astype(np.float64)
    total += batch.sum(axis=0)
    pixels = batch.reshape(-1, 3)
    pixel_sum += pixels.sum(axis=0)
    pixel_outer += pixels.T @ pixels
    n += len(batch)
    if n % 25600 < len(batch):
      log(f'stats: {n} images, {n / (time.time() - start):.0f}/s')
  if n == 0:
    raise DatasetError(f'No decodable training examples in {data_config.train_split!r}.')
  num_pixels = n * r * r
  channel_mean = pixel_sum / num_pixels
  covariance = pixel_outer / num_pixels - np.outer(channel_mean, channel_mean)
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)
  return {
      'mean_image': (total / n).astype(np.float32),
      'channel_mean': channel_mean.astype(np.float32),
      'pca_std': np.sqrt(np.maximum(eigenvalues, 0)).astype(np.float32),
      'pca_vectors': eigenvectors.astype(np.float32),
      'num_examples': np.int64(n),
      'resize_size': np.int64(r),
      'skipped': np.array(skipped, dtype=str),
  }


def compute_and_save(data_config, *, log=print) -> str:
  stats = compute(data_config, max_examples=int(data_config.stats_max_examples), log=log)
  # One file for both formats: JPEG and raw squares are the same images (to JPEG's error, far
  # below what the stats are used for), so the stats of either serve both.
  path = locations.stats_path(data_config, locations.source_name(data_config))
  stats_file.save(path, stats)
  skipped = [str(s) for s in stats['skipped']]
  log(f'stats: {int(stats["num_examples"])} images, {len(skipped)} skipped (undecodable)'
      f'{": " + "; ".join(skipped) if skipped else ""} -> {path}; channel mean '
      f'{[round(float(x), 2) for x in stats["channel_mean"]]}, PCA std '
      f'{[round(float(x), 2) for x in stats["pca_std"]]}')
  return path

