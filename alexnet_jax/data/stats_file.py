"""The stats file: the training split's mean image and RGB PCA, as a NumPy .npz.

Arrays: mean_image [R, R, 3], channel_mean [3], pca_std [3] (ascending), pca_vectors [3, 3]
(eigenvectors as columns), num_examples, resize_size, and `skipped`: the undecodable images
left out, as 'split position file' strings. Written atomically (alexnet_jax/record/fileio.py): a
reader, or a run after a kill, sees the old file or the new one, never a part.
"""

from __future__ import annotations

import io
import os

import numpy as np

from alexnet_jax.record import fileio


def needed(data_config) -> bool:
  """Whether the config's mean or colour noise needs the stats file."""
  return (data_config.mean == 'image' or data_config.pca_noise == 'stats' or
          (data_config.mean == 'channel' and data_config.channel_mean is None))


def load(path: str) -> dict[str, np.ndarray]:
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def save(path: str, stats: dict[str, np.ndarray]) -> None:
  buffer = io.BytesIO()
  np.savez(buffer, **stats)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fileio.write_atomic(path, buffer.getvalue())
