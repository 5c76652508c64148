"""The research tools' only door into alexnet_jax.data (ensembles, predictions, figures).

Everything the tools read goes through these functions, so a change of the data package's API
changes this file alone. They give exactly what evaluation feeds the net: uint8 crops (the
central crop or the 10 views of the stored squares), which the tools turn into the net's input
on the device with the dataset's transform (`setup.plan(...).steps.transform`, mean and
scale), as the eval step does. Being uint8 RGB, the crops are also what the figures show.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def eval_batches(config, *, views: int, batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """The validation split as evaluation reads it: {'image' uint8 [B, V, S, S, 3], 'label',
  'mask'}; every example once over all processes (padding masked)."""
  from alexnet_jax.data import pipeline
  return pipeline.eval_iterator(pipeline.open_dataset(config.data),
                                image_size=config.model.input_size,
                                global_batch_size=batch_size, views=views,
                                process_index=process_index, process_count=process_count)


def examples(config, *, split: str, limit: int = 0,
             batch_size: int = 64) -> Iterator[dict[str, np.ndarray]]:
  """Central crops of `split` ('eval' or 'train', the latter without augmentation), in the
  split's order: batches of {'image' uint8 [B, S, S, 3], 'label'}, padding removed, at most
  `limit` examples (0: all). Images nothing could be decoded from are left out: their black
  stand-ins are no picture to show or to search for (evaluation still counts them)."""
  from alexnet_jax.data import pipeline
  data = config.data.copy_and_resolve_references()
  if split == 'train':
    data.eval_split = data.train_split  # the evaluation reader, over the training split
  elif split != 'eval':
    raise ValueError(f"split must be 'eval' or 'train', got {split!r}")
  seen = 0
  for batch in pipeline.eval_iterator(pipeline.open_dataset(data),
                                      image_size=config.model.input_size,
                                      global_batch_size=batch_size, views=1):
    keep = np.array(batch['mask'], bool) & batch['decoded']  # a copy: arrays may be read-only
    if limit:
      keep &= np.cumsum(keep) <= limit - seen
    if not keep.any():
      if limit and seen >= limit:
        return
      continue
    images = np.asarray(batch['image'])[keep, 0]
    seen += len(images)
    yield {'image': images, 'label': np.asarray(batch['label'])[keep]}


class UnreadableImage(Exception):
  """A file that cannot be read or decoded as an image."""


def file_views(config, paths: list[str], views: int) -> list:
  """For each path: its uint8 views [views, S, S, 3] exactly as evaluation would feed them had
  the file been in the validation split (`pipeline.eval_views_of_file`), or the
  UnreadableImage saying why not."""
  from alexnet_jax.data import pipeline
  out = []
  for path in paths:
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      out.append(UnreadableImage(e.strerror or str(e)))
      continue
    try:
      out.append(pipeline.eval_views_of_file(config.data, data,
                                             image_size=config.model.input_size, views=views))
    except pipeline.UndecodableImage as e:
      out.append(UnreadableImage(str(e)))
  return out
