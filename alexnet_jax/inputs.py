"""The research tools' only door into alexnet_jax.data (ensembles, predictions, figures).

Everything the tools read goes through these functions, so a change of the data package's API
changes this file alone. They give model inputs exactly as evaluation makes them (centre crop or
10 views, the mean and scale of `config.data`) and, for figures, the same crops as displayable
uint8 RGB.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np


def prepare(config):
  """Checks (or makes) the dataset, as training does; returns its DatasetInfo."""
  from alexnet_jax.data import pipeline
  return pipeline.prepare(config.data, model_num_classes=config.model.num_classes,
                          image_size=config.model.input_size)


def eval_batches(config, *, views: int, batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """The validation split as evaluation reads it: {'image' [B, V, S, S, 3] model input,
  'label', 'mask'}; every example once over all processes (padding masked)."""
  from alexnet_jax.data import pipeline
  return pipeline.eval_iterator(config.data, image_size=config.model.input_size,
                                global_batch_size=batch_size, views=views,
                                process_index=process_index, process_count=process_count)


def _preprocessing(config):
  from alexnet_jax.data import pipeline
  info = prepare(config)
  stats = pipeline.load_stats(config.data, info.name)
  return pipeline.preprocessing(config.data, config.model.input_size, stats)


def to_display(images: np.ndarray, preprocessing) -> np.ndarray:
  """Model inputs ((RGB - mean) * scale) back to uint8 RGB, [..., S, S, 3]."""
  rgb = np.asarray(images, np.float32) / preprocessing.input_scale + preprocessing.mean
  return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def examples(config, *, split: str, limit: int = 0,
             batch_size: int = 64) -> Iterator[dict[str, np.ndarray]]:
  """Centre crops of `split` ('eval' or 'train', the latter without augmentation), in file
  order: batches of {'image' model input [B, S, S, 3], 'display' uint8 [B, S, S, 3], 'label'},
  padding removed, at most `limit` examples (0: all)."""
  from alexnet_jax.data import pipeline
  data = config.data.copy_and_resolve_references()
  if split == 'train':
    data.eval_split = data.train_split
  elif split != 'eval':
    raise ValueError(f"split must be 'eval' or 'train', got {split!r}")
  p = _preprocessing(config)
  seen = 0
  for batch in pipeline.eval_iterator(data, image_size=config.model.input_size,
                                      global_batch_size=batch_size, views=1):
    keep = np.array(batch['mask'], bool)  # a copy: the batch's arrays may be read-only
    if limit:
      keep &= np.cumsum(keep) <= limit - seen
    if not keep.any():
      if limit and seen >= limit:
        return
      continue
    images = np.asarray(batch['image'])[keep, 0]
    seen += len(images)
    yield {'image': images, 'display': to_display(images, p),
           'label': np.asarray(batch['label'])[keep]}


class UnreadableImage(Exception):
  """A file that cannot be read or decoded as an image."""


def file_views(config, paths: list[str], views: int):
  """For each path: (model input [views, S, S, 3], display uint8 [S, S, 3] of the centre crop)
  through the evaluation preprocessing, or the UnreadableImage saying why it failed."""
  from alexnet_jax.data import preprocess
  p = _preprocessing(config)
  centre = 4 if views == 10 else 0  # the 10 views are 4 corners, the centre, then mirrors
  out = []
  for path in paths:
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      out.append(UnreadableImage(e.strerror or str(e)))
      continue
    try:
      image = np.asarray(preprocess.eval_views(data, views, p))
      out.append((image, to_display(image[centre], p)))
    except Exception as e:  # pylint: disable=broad-except
      if not type(e).__module__.startswith('tensorflow'):
        raise  # a decoder's error names the file; anything else is a bug, not a bad image
      message = getattr(e, 'message', str(e)).splitlines()[0]
      message = re.sub(r'\{\{.*?\}\}\s*|\s*\[Op:.*$', '', message).strip()
      out.append(UnreadableImage(f'not a decodable image ({message})'))
  return out
