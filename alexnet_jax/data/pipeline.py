"""What training reads: `train_iterator` and `eval_iterator` over an opened dataset (and
`eval_views_of_file`: the same evaluation input of an image file outside the dataset).

    dataset = pipeline.open_dataset(data_config)   # or pipeline.dataset_info(...).dataset
    batches = pipeline.train_iterator(dataset, image_size=224, global_batch_size=128, seed=0)

The dataset is a value (dataset.py) that whoever runs opens once and passes here; nothing in
this module remembers one. The host's share of the work is small: read the stored resize_size
JPEGs (squares.py), decode each training crop's window, mirror it (image_ops.py) and batch
uint8 crops; the float work runs on the device (device_preprocess.py). The order is a pure
function of (config, seed, step, process) (order.py), and so is every crop and mirror:
stateless ops keyed by (seed, process, position in the stream). An image nothing could be
decoded from keeps its position as a placeholder (a black crop; weight 0 in training; counted,
with its label, in evaluation), so neither the order nor the evaluated count depends on whether
every file could be read, and it is reported once by name (undecodable.py).

Nothing here makes data: the one-time commands (prepare/) sit above this module and this module
imports none of them.
"""

from __future__ import annotations

import atexit
import re
import weakref
from collections.abc import Iterator

import numpy as np
from alexnet_jax.data.tf_setup import plain, tf

from alexnet_jax import config_schema
from alexnet_jax.data import image_ops
from alexnet_jax.data import order
from alexnet_jax.data import raw_batches
from alexnet_jax.data import sources
from alexnet_jax.data import squares
from alexnet_jax.data import undecodable
# The front door of the input: what a run opens and checks at start-up, then reads.
from alexnet_jax.data.dataset import (Dataset, DatasetInfo, check_crops, dataset_info,  # noqa: F401
                                      open_dataset)
from alexnet_jax.data.errors import DatasetError, UndecodableImage


# ------------------------------------------------------------------------------------- pipelines

def _options(data_config) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  if data_config.threads > 0:
    options.threading.private_threadpool_size = int(data_config.threads)
  return options


def parallel_calls(data_config) -> int:
  return tf.data.AUTOTUNE if data_config.parallel_calls < 0 else int(data_config.parallel_calls)


# The batch iterators not yet finished. A tf.data iterator fed by Python (the training order's
# from_generator) that is still alive when the interpreter finalizes can hang the process: its
# threads wait for a Python that is shutting down (tensorflow/tensorflow#22632). They are closed
# at exit instead, while Python still runs.
_LIVE = weakref.WeakSet()


@atexit.register
def _close_live_iterators() -> None:
  for batches in list(_LIVE):
    batches.close()


def _numpy_batches(streams: list[tf.data.Dataset], keys: tuple[str, ...], dataset: Dataset,
                   segments: list[list[sources.Segment]], what: str, check_decoded: bool,
                   kept_as: str, finish=None) -> Iterator[dict[str, np.ndarray]]:
  """`_batches`, closed at exit if still open."""
  batches = _batches(streams, keys, dataset, segments, what, check_decoded, kept_as, finish)
  _LIVE.add(batches)
  return batches


def _batches(streams: list[tf.data.Dataset], keys: tuple[str, ...], dataset: Dataset,
             segments: list[list[sources.Segment]], what: str, check_decoded: bool,
             kept_as: str, finish=None) -> Iterator[dict[str, np.ndarray]]:
  """The batches of the tf.data `streams` (stacked in order when several; `segments[j]` are
  those the j-th reads) as numpy, with only `keys`: 'image', 'label' (int32) and 'weight'
  (float32: 0 for an undecodable image) or 'mask'. `finish[j]`, if given, completes the j-th
  stream's numpy batch (the raw squares' path: gathers the squares, draws the crops).

  Reports each undecodable image once, by split, position and file name. Raises DatasetError at
  a label outside the classes, and with `check_decoded` at a batch in which not one image could
  be decoded: the data is not images, and training on nothing must not go on silently.
  """
  iterator = tf.data.Dataset.zip(tuple(streams)).as_numpy_iterator()
  while True:
    try:
      parts = next(iterator)
      if finish is not None:
        parts = tuple(f(p) for f, p in zip(finish, parts))
    except StopIteration:
      return
    except (tf.errors.OpError, OSError, ValueError) as e:
      reason = e.message if isinstance(e, tf.errors.OpError) else str(e)
      raise DatasetError(f'Reading {what} of {dataset.name} failed ({reason.strip()}); '
                         'its stored files may be damaged: make them again (delete the folder '
                         'named above, then run the command that made it).') from e
    labels = np.concatenate([p['label'] for p in parts])
    if labels.min() < 0 or labels.max() >= dataset.num_classes:
      raise DatasetError(
          f'{what} has a label outside 0..{dataset.num_classes - 1}, the classes the config '
          'expects (does data.dataset, data.tfds_name or data.mini.num_classes match the data '
          'on disk?).')
    for part, part_segments in zip(parts, segments):
      for i in np.flatnonzero(~part['decoded']):
        split = part_segments[part['segment'][i]].split
        position = int(part['position'][i])
        undecodable.report(dataset.name, split, position,
                           dataset.undecodable.get((split, position), ''), kept_as)
    decoded = np.concatenate([p['decoded'] for p in parts])
    if check_decoded and not decoded.any():
      raise DatasetError(
          f'Not one of the {len(decoded)} images of a batch of {what} could be decoded (see '
          'the warnings above): it does not hold images.')
    batch = {'label': labels.astype(np.int32), 'weight': decoded.astype(np.float32)}
    for key in keys:
      if key not in batch:
        batch[key] = parts[0][key] if len(parts) == 1 else np.concatenate([p[key] for p in parts])
    yield {key: batch[key] for key in keys}


def _train_chunks(dataset: Dataset, process_index: int, process_count: int):
  return sources.split_into_chunks(order.share(dataset.train, process_index, process_count),
                                   int(dataset.config.chunk_size))


def _train_order(dataset: Dataset, chunks, *, seed: int, start: int,
                 process_index: int) -> tf.data.Dataset:
  """(stream position, record) of this shard's training stream from stream position `start`:
  windows of chunks interleaved and shuffled (order.py), whatever the records hold (encoded
  squares, or rows of raw squares: the order is the same)."""
  data_config = dataset.config
  window_chunks = int(data_config.window_chunks)
  read = sources.segment_reader(dataset.source, chunks)
  plans = tf.data.Dataset.from_generator(
      lambda: order.window_plans(chunks, window_chunks, seed, process_index, start),
      output_signature=(tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64),
                        tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64),
                        tf.TensorSpec([], tf.int64)))

  def window(ids, shuffle_seed, skip, first_position, end_position):
    """(stream position, record) of the window's examples from `skip` on."""
    ds = tf.data.Dataset.from_tensor_slices(ids).interleave(
        plain(read), cycle_length=window_chunks, block_length=1, num_parallel_calls=window_chunks,
        deterministic=True)
    ds = ds.shuffle(int(data_config.shuffle_buffer), seed=shuffle_seed).skip(skip)
    return tf.data.Dataset.zip(tf.data.Dataset.range(first_position, end_position), ds)

  return plans.flat_map(plain(window))


def _crop_seed(seed: int, process_index: int) -> int:
  """The first half of every training example's crop key; the second is its stream position."""
  return order.seed_int(seed, process_index, 1)


def train_dataset(dataset: Dataset, *, image_size: int, global_batch_size: int, seed: int,
                  start_step: int = 0, process_index: int = 0,
                  process_count: int = 1) -> tf.data.Dataset:
  """The tf.data pipeline behind `train_iterator`: batches of {'image': uint8 crops, 'label'
  (as stored), 'decoded', 'segment' (index into `_train_chunks`), 'position' (in the split)};
  on the raw squares' path batches of (stream position, (row, label, name, segment,
  position)), which `raw_batches.train_finish` completes."""
  data_config = dataset.config
  check_crops(data_config, image_size)
  local_batch = order.local_batch(global_batch_size, process_count)
  chunks = _train_chunks(dataset, process_index, process_count)
  if not chunks:
    raise DatasetError(f'Process {process_index} of {process_count} has no training examples: '
                       f'the split {data_config.train_split!r} is smaller than the process count.')
  ds = _train_order(dataset, chunks, seed=seed, start=start_step * local_batch,
                    process_index=process_index)
  if not _raw(dataset):  # the raw squares' rows are batched as they come: no work per example
    ds = ds.map(plain(_jpeg_train_crop(data_config, image_size, _crop_seed(seed, process_index))),
                num_parallel_calls=parallel_calls(data_config), deterministic=True)
  ds = ds.batch(local_batch, drop_remainder=True).prefetch(int(data_config.prefetch))
  return ds.with_options(_options(data_config))


def _jpeg_train_crop(data_config, image_size: int, crop_seed: int):
  """(stream position, record) -> the example with its uint8 training crop, decoded from the
  stored JPEG square (only the crop's window), keyed by (crop_seed, stream position)."""
  r, s = int(data_config.resize_size), image_size
  random_crop, mirror = data_config.train_crop == 'random', bool(data_config.mirror)

  def decode(stream_position, record):
    image, label, _, segment, position = record
    decoded = tf.strings.length(image) > 0
    key = tf.stack([tf.constant(crop_seed, tf.int64), stream_position])
    crop = tf.cond(decoded,
                   lambda: image_ops.train_crop(image, key, r, s, random_crop, mirror),
                   lambda: tf.zeros([s, s, 3], tf.uint8))
    return {'image': crop, 'label': label, 'decoded': decoded, 'segment': segment,
            'position': position}
  return decode


def _raw(dataset: Dataset) -> bool:
  return squares.is_raw(dataset.config)


def train_iterator(dataset: Dataset, *, image_size: int, global_batch_size: int, seed: int,
                   start_step: int = 0, process_index: int = 0, process_count: int = 1,
                   weights: bool = False) -> Iterator[dict[str, np.ndarray]]:
  """Infinite iterator of this process's batches: {'image': uint8 [B, S, S, 3], 'label': int32
  [B]}, B = global_batch_size // process_count, and with `weights` also 'weight': float32 [B],
  1 for every example but 0 for the placeholder (a black crop, label as stored) that stands in
  for an image nothing could be decoded from (reported once, by name). Without `weights` the
  placeholder is trained on like any example, so a training loop should ask for them and weight
  its loss with them. With data.squares_format='raw', 'image' is the whole uint8 squares [B, R,
  R, 3] and 'crop' int32 [B, 3] says where each crop lies and whether it is mirrored: the train
  step cuts it (device_preprocess.crop_squares), the same crop the JPEG squares' path cuts here.

  The batch of step s depends only on (config, seed, s, process), undecodable images included,
  so start_step=s resumes exactly; getting there reads at most one window. A label outside the
  dataset's classes raises DatasetError, as does a batch with not one decodable image.

  `data.shards` (0: one per process) fixes how the split is divided: each process reads
  shards/process_count of them and stacks their batches in shard order, so the GLOBAL batch of a
  step is the same whatever the number of processes (a run can move between host counts)."""
  shards = int(dataset.config.get('shards', 0)) or process_count
  if shards % process_count:
    raise DatasetError(f'data.shards={shards} must be a multiple of the {process_count} '
                       'processes (or 0: one shard per process).')
  per_process = shards // process_count
  indices = [process_index * per_process + j for j in range(per_process)]
  streams = [train_dataset(
      dataset, image_size=image_size, global_batch_size=global_batch_size, seed=seed,
      start_step=start_step, process_index=i, process_count=shards) for i in indices]
  keys = ('image', 'label', 'weight') if weights else ('image', 'label')
  finish = None
  if _raw(dataset):
    keys += ('crop',)
    finish = [raw_batches.train_finish(dataset, image_size, _crop_seed(seed, i)) for i in indices]
  return _numpy_batches(streams, keys, dataset,
                        [_train_chunks(dataset, i, shards) for i in indices],
                        f'the training split {dataset.config.train_split!r}', check_decoded=True,
                        kept_as='it keeps its place in training as a weight-0 placeholder',
                        finish=finish)


def eval_dataset(dataset: Dataset, *, image_size: int, global_batch_size: int, views: int,
                 process_index: int = 0, process_count: int = 1) -> tf.data.Dataset:
  """The tf.data pipeline behind `eval_iterator`."""
  data_config = dataset.config
  check_crops(data_config, image_size)
  config_schema.check_value('eval.views', views)
  local_batch = order.local_batch(global_batch_size, process_count)
  num_batches = -(-order.largest_share(sources.num_examples(dataset.eval), process_count)
                  // local_batch)
  segments = order.share(dataset.eval, process_index, process_count)
  r, s = int(data_config.resize_size), image_size
  black = tf.zeros([views, s, s, 3], tf.uint8)

  # An undecodable image is evaluated as a black image, with its label and mask True: it counts
  # once, like every example of the split, as (almost surely) an error.
  def decode(image, label, _, segment, position):
    decoded = tf.strings.length(image) > 0
    views_ = tf.cond(decoded, lambda: image_ops.eval_views(image, views, r, s), lambda: black)
    return {'image': views_, 'label': label, 'mask': tf.constant(True), 'decoded': decoded,
            'segment': segment, 'position': position}

  def row(row_, label, _, segment, position):  # the raw squares' path: views cut per batch
    return {'row': row_, 'label': label, 'mask': tf.constant(True), 'segment': segment,
            'position': position}

  ds = sources.read_in_order(dataset.source, segments)
  if _raw(dataset):
    ds = ds.map(plain(row))
  else:
    ds = ds.map(plain(decode), num_parallel_calls=parallel_calls(data_config), deterministic=True)
  # Padding (mask False) fills the last batches, so every process yields the same batch count.
  padding = {'label': tf.constant(0, tf.int64), 'mask': tf.constant(False),
             'segment': tf.constant(0, tf.int64), 'position': tf.constant(-1, tf.int64)}
  padding.update({'row': tf.constant(-1, tf.int64)} if _raw(dataset) else
                 {'image': black, 'decoded': tf.constant(True)})
  ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat())
  ds = ds.take(num_batches * local_batch).batch(local_batch, drop_remainder=True)
  ds = ds.prefetch(int(data_config.prefetch))
  return ds.with_options(_options(data_config))


def eval_iterator(dataset: Dataset, *, image_size: int, global_batch_size: int, views: int,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Finite iterator: {'image': uint8 [B, views, S, S, 3], 'label': int32 [B], 'mask': bool
  [B], 'decoded': bool [B]}. Over all processes every example of the eval split appears exactly
  once with mask True, so the mask count is always DatasetInfo.num_eval: an image nothing could
  be decoded from is there as a black image (reported once, by name) with its own label and
  'decoded' False (tools that show images leave it out). All processes yield the
  same number of batches (padding is masked), so multi-host evaluation cannot hang. A label
  outside the dataset's classes raises DatasetError."""
  ds = eval_dataset(dataset, image_size=image_size, global_batch_size=global_batch_size,
                    views=views, process_index=process_index, process_count=process_count)
  finish = [raw_batches.eval_finish(dataset, image_size, views)] if _raw(dataset) else None
  return _numpy_batches([ds], ('image', 'label', 'mask', 'decoded'), dataset,
                        [order.share(dataset.eval, process_index, process_count)],
                        f'the eval split {dataset.config.eval_split!r}', check_decoded=False,
                        kept_as='it is evaluated as a black image (counted, with its label)',
                        finish=finish)


# ------------------------------------------------------------------------- one image, not stored

def _decoder_reason(error: tf.errors.OpError) -> str:
  """TensorFlow's message without its function and op names: 'Unknown image file format...'."""
  lines = (error.message or str(error)).strip().splitlines()
  return re.sub(r'\{\{.*?\}\}\s*|\s*\[Op:.*$', '', lines[0] if lines else '').strip()


def eval_views_of_file(data_config, image_bytes: bytes, *, image_size: int,
                       views: int) -> np.ndarray:
  """What evaluation feeds the net for an image file that is not in the dataset (a photograph
  to classify): uint8 [views, S, S, 3], its stored square made exactly as the dataset's are
  (`squares.squaring`: central square, rescaled, JPEG of data.squares_quality), then the
  central crop or the 10 views exactly as `eval_iterator` cuts them. The float work (mean,
  scale) is the device's, as in evaluation. UndecodableImage (a DatasetError) with the
  decoder's reason when nothing can be decoded from the bytes."""
  check_crops(data_config, image_size)
  config_schema.check_value('eval.views', views)
  try:
    square = image_ops.stored_square(tf.constant(image_bytes), squares.squaring(data_config))
    return image_ops.eval_views(square, views, int(data_config.resize_size), image_size).numpy()
  except tf.errors.OpError as e:
    raise UndecodableImage(f'not a decodable image ({_decoder_reason(e)})') from e
