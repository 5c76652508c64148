"""Per-pixel mean image and RGB PCA of a training split, saved where the pipeline finds them.

    python -m alexnet_jax.data.stats --config=configs/alexnet.py

Images go through the same resize and central square as the pipeline (resize_size x resize_size,
0-255 RGB), as the paper's mean image was taken over its 256x256 training images. The PCA is of
all RGB pixel values of those images: `pca_std` are the square roots of the covariance's
eigenvalues (ascending, like the original code's [19.72, 37.09, 121.78]), `pca_vectors` its
eigenvectors as columns.
"""

from __future__ import annotations

import os
import time

import numpy as np
import tensorflow as tf

from alexnet_jax.data import pipeline
from alexnet_jax.data import preprocess as preprocess_lib


def compute(data_config, *, max_examples: int = 0, log=print) -> dict[str, np.ndarray]:
  """The stats of data_config.train_split (the first `max_examples` examples if > 0)."""
  opened = pipeline._open(data_config)  # pylint: disable=protected-access
  segments = opened.train
  if max_examples > 0:
    segments = pipeline.sources_lib.cut(segments, 0, max_examples)
  r = data_config.resize_size
  p = preprocess_lib.Preprocessing(
      image_size=r, resize_size=r, resize_method=data_config.resize_method,
      antialias=bool(data_config.antialias), random_crop=False, mirror=False,
      fused_decode_crop=False, mean=np.zeros([], np.float32), pca_scales=None, pca_vectors=None,
      pca_std=0.0, input_scale=1.0,
      truncated_jpeg_fraction=float(data_config.truncated_jpeg_fraction))
  source = opened.source
  keys = tf.constant([s.key for s in segments], tf.string)
  starts = tf.constant([s.start for s in segments], tf.int64)
  counts = tf.constant([s.count for s in segments], tf.int64)
  ds = tf.data.Dataset.range(len(segments)).flat_map(
      lambda i: source.read(keys[i], starts[i], counts[i]))
  ds = ds.map(lambda image, label: preprocess_lib.central_square(image, p),
              num_parallel_calls=tf.data.AUTOTUNE).ignore_errors(log_warning=True)
  ds = ds.batch(64).prefetch(2)
  total = np.zeros([r, r, 3], np.float64)
  pixel_sum = np.zeros([3], np.float64)
  pixel_outer = np.zeros([3, 3], np.float64)
  n = 0
  start = time.time()
  for batch in ds.as_numpy_iterator():
    batch = batch.astype(np.float64)
    total += batch.sum(axis=0)
    pixels = batch.reshape(-1, 3)
    pixel_sum += pixels.sum(axis=0)
    pixel_outer += pixels.T @ pixels
    n += len(batch)
    if n % 25600 < len(batch):
      log(f'stats: {n} images, {n / (time.time() - start):.0f}/s')
  if n == 0:
    raise pipeline.DatasetError(f'No training examples in {data_config.train_split!r}.')
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
  }


def compute_and_save(data_config, *, log=print) -> str:
  stats = compute(data_config, max_examples=int(data_config.stats_max_examples), log=log)
  path = pipeline.stats_path(data_config, pipeline._open(data_config).source.name)  # pylint: disable=protected-access
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.tmp.npz'
  np.savez(tmp, **stats)
  os.replace(tmp, path)
  log(f'stats: {int(stats["num_examples"])} images -> {path}; channel mean '
      f'{np.round(stats["channel_mean"], 2).tolist()}, PCA std {np.round(stats["pca_std"], 2).tolist()}')
  return path


def main(argv):
  del argv
  from alexnet_jax.data.pipeline import DatasetError  # pylint: disable=import-outside-toplevel
  try:
    compute_and_save(_CONFIG.value.data)
  except DatasetError as e:  # A message for a person, not a traceback.
    raise SystemExit(f'error: {e}') from None


if __name__ == '__main__':
  from absl import app
  from ml_collections import config_flags

  _CONFIG = config_flags.DEFINE_config_file('config', 'configs/alexnet.py',
                                            'Config file; its data block names the split.')
  app.run(main)
