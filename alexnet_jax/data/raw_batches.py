"""The raw squares' path (data.squares_format='raw'), batch by batch: what the host does to a
batch of rows of the stored uint8 squares. NumPy at batch level, nothing per example: gather the
whole squares at once, draw the training crops (cut later, on the device, by
device_preprocess.crop_squares) or cut evaluation's fixed views. The pipeline's tf.data part only
orders the rows (pipeline.py), exactly as it orders the JPEG squares, so both paths see the same
examples in the same order with the same crops.
"""

from __future__ import annotations

import numpy as np

from alexnet_jax.data import crop_draws


def train_finish(dataset, image_size: int, crop_seed: int):
  """numpy batch of (stream positions, (rows, labels, names, segments, positions)) -> the batch
  the raw squares' train step takes: the whole squares ('image' uint8 [B, R, R, 3], gathered at
  once), the crop draws ('crop' int32 [B, 3]: the
  offsets and mirror `image_ops.train_crop` would draw for the same key, cut on the device) and
  'decoded'. Batch-level numpy work: no decode, no draw per example (the gather copies one
  square at a time: see RawSquaresSource.gather)."""
  data_config = dataset.config
  source = dataset.source
  r = int(data_config.resize_size)
  random_crop, mirror = data_config.train_crop == 'random', bool(data_config.mirror)

  def finish(part):
    stream_positions, (rows, labels, _, segments, positions) = part
    return {'image': source.gather(rows), 'label': labels, 'decoded': source.decoded(rows),
            'segment': segments, 'position': positions,
            'crop': crop_draws.train_crop_draws(crop_seed, stream_positions, r, image_size,
                                                random_crop, mirror)}
  return finish


def eval_finish(dataset, image_size: int, views: int):
  """numpy batch of rows (-1: padding) -> its evaluation views, uint8 [B, views, S, S, 3], cut
  from the gathered squares exactly as `image_ops.eval_views` cuts them from the JPEG squares.
  Evaluation's views are fixed slices (no draws), so they are cut here, per batch, and every
  tool that reads evaluation batches sees one layout whatever the squares' format."""
  source = dataset.source
  r, s = int(dataset.config.resize_size), image_size

  def finish(part):
    rows = part.pop('row')
    real = rows >= 0
    squares_ = np.zeros((len(rows), r, r, 3), np.uint8)
    squares_[real] = source.gather(rows[real])
    part['image'] = square_views(squares_, views, s)
    part['decoded'] = np.ones(len(rows), bool)
    part['decoded'][real] = source.decoded(rows[real])
    return part
  return finish


def square_views(squares_: np.ndarray, views: int, image_size: int) -> np.ndarray:
  """uint8 [B, R, R, 3] -> [B, views, S, S, 3]: the central crop (1 view), or the corners and
  the centre, then the same five mirrored (10 views), as `image_ops.eval_views`."""
  r, s = squares_.shape[1], image_size
  c, e = (r - s) // 2, r - s
  corners = ((c, c),) if views == 1 else ((0, 0), (0, e), (e, 0), (e, e), (c, c))
  five = [squares_[:, y:y + s, x:x + s] for y, x in corners]
  if views > 1:
    five += [v[:, :, ::-1] for v in five]
  return np.stack(five, axis=1)
