"""What the training loop calls: `prepare`, `train_iterator`, `eval_iterator`.

Training order is a pure function of (config, seed, step, process): each process owns a fixed
contiguous share of the split, cut into chunks (file positions); every epoch permutes the chunks
with a seed of (seed, process, epoch), reads `window_chunks` of them interleaved and shuffles them
with a seeded buffer that restarts at every window. A run resumed at step s therefore computes
which window and which element of it step s starts at and reads only that window's chunks to get
there, never an epoch. Crops, mirrors and colour noise use stateless ops keyed by
(seed, process, position in the stream). A file nothing can be decoded from keeps its position
as a placeholder (weight 0 in training; counted, with its label, in evaluation), so neither
the order nor the evaluated count depends on whether every file can be read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shlex
from collections.abc import Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from alexnet_jax.data import preprocess as preprocess_lib
from alexnet_jax.data import sources as sources_lib
from alexnet_jax.data.ilsvrc_archive import TRAIN_TAR, VAL_TAR

PREPARE_COMMAND = 'python -m alexnet_jax.data.tfds_prepare --config=configs/alexnet.py'
STATS_COMMAND = 'python -m alexnet_jax.data.stats --config=configs/alexnet.py'
MINI_COMMAND = 'python -m alexnet_jax.data.mini_imagenet --config=configs/alexnet.py:quickstart'
# The data fields each command reads, with their values in the config the command names
# (configs/alexnet.py, or its quickstart for MINI_COMMAND): a message adds a
# --config.data.<field>=<value> flag for every field the user's config sets otherwise.
_PAPER_DATA = {'dataset': 'imagenet2012', 'tfds_name': '', 'data_dir': '', 'manual_dir': '',
               'folder': '', 'train_split': 'train', 'resize_size': 256, 'stats_dir': '',
               'stats_max_examples': 0}
_QUICKSTART_DATA = {'dataset': 'mini_imagenet', 'data_dir': '~/.cache/alexnet_jax/mini_imagenet',
                    'manual_dir': '', 'train_split': 'train[:90%]', 'resize_size': 128,
                    'stats_dir': '', 'stats_max_examples': 0, 'mini.num_classes': 10,
                    'mini.images_per_class': 300, 'mini.min_side': 80, 'mini.max_side': 220,
                    'mini.jpeg_quality': 90, 'mini.seed': 0}
_COMMAND_FIELDS = {
    PREPARE_COMMAND: (_PAPER_DATA, ('dataset', 'tfds_name', 'data_dir', 'manual_dir')),
    STATS_COMMAND: (_PAPER_DATA, ('dataset', 'tfds_name', 'data_dir', 'manual_dir', 'folder',
                                  'train_split', 'resize_size', 'stats_dir',
                                  'stats_max_examples')),
    MINI_COMMAND: (_QUICKSTART_DATA, tuple(_QUICKSTART_DATA)),
}


def command(base: str, data_config, extra: str = '') -> str:
  """`base` (one of the commands above) with flags for the user's data settings, so that it
  prepares what this config reads (e.g. --config.data.data_dir=... when it is not the default)."""
  defaults, fields = _COMMAND_FIELDS[base]
  flags = []
  for field in fields:
    value = data_config
    for part in field.split('.'):
      value = value.get(part, None) if value is not None else None
    if value is not None and value != defaults.get(field):
      flags.append(shlex.quote(f'--config.data.{field}={value}'))
  return ' '.join([base, *flags] + ([extra] if extra else []))


# TFDS builder of each dataset (data.tfds_name overrides).
_TFDS_NAMES = {'imagenet2012': 'imagenet2012', 'mini_imagenet': 'imagenet2012',
               'imagenette': 'imagenette/full-size-v2'}


class DatasetError(Exception):
  """The dataset is missing, incomplete or does not fit the config; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  num_train: int
  num_eval: int
  num_classes: int
  name: str
  train_split: str
  eval_split: str
  stats_file: str | None  # None when the config needs no stats file


# ---------------------------------------------------------------------------------------- paths

def _expand(path: str) -> str:
  return os.path.abspath(os.path.expanduser(path))


def resolve_data_dir(data_config) -> str:
  return _expand(data_config.data_dir) if data_config.data_dir else _expand(
      tfds.core.constants.DATA_DIR if hasattr(tfds.core, 'constants') else '~/tensorflow_datasets')


def resolve_manual_dir(data_config) -> str:
  if data_config.manual_dir:
    return _expand(data_config.manual_dir)
  return os.path.join(resolve_data_dir(data_config), 'downloads', 'manual')


def resolve_stats_dir(data_config) -> str:
  if data_config.stats_dir:
    return _expand(data_config.stats_dir)
  return os.path.join(resolve_data_dir(data_config), 'alexnet_jax_stats')


def stats_path(data_config, source_name: str) -> str:
  """Where the stats command writes, and the pipeline looks for, this split's stats."""
  def clean(text):
    return re.sub(r'[^A-Za-z0-9.]+', '_', text).strip('_')
  split = data_config.train_split
  digest = hashlib.sha1(split.encode()).hexdigest()[:8]  # 'train[:90%]' vs 'train[90%:]'
  name = f'{clean(source_name)}__{clean(split)}_{digest}__{data_config.resize_size}.npz'
  return os.path.join(resolve_stats_dir(data_config), name)


# ------------------------------------------------------------------------------ opening a dataset

@dataclasses.dataclass
class _Opened:
  source: sources_lib.Source
  num_classes: int
  train: list[sources_lib.Segment]
  eval: list[sources_lib.Segment]


_OPENED: dict[str, _Opened] = {}


def _config_key(data_config) -> str:
  return data_config.to_json_best_effort(sort_keys=True)


def _tfds_builder(data_config):
  name = data_config.tfds_name or _TFDS_NAMES[data_config.dataset]
  try:
    return tfds.builder(name, data_dir=resolve_data_dir(data_config))
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetError(f'TFDS has no dataset {name!r} ({e}). Set data.tfds_name.') from e


def _imagenet_missing_message(data_config, what: str, prepare_flags: str = '') -> str:
  """`what`, then where the ILSVRC-2012 tars go and the commands that prepare them."""
  manual = resolve_manual_dir(data_config)
  found = [f for f in (TRAIN_TAR, VAL_TAR) if os.path.exists(os.path.join(manual, f))]
  return (
      f'{what}\nILSVRC-2012 is prepared once from the manual download (docs/data.md):\n'
      f'  1. put {TRAIN_TAR} and {VAL_TAR} (from image-net.org) in\n     {manual}\n'
      f'     (found there now: {", ".join(found) or "nothing"}; or set data.manual_dir)\n'
      f'  2. run: {command(PREPARE_COMMAND, data_config, prepare_flags)}\n'
      f'     (it writes to data.data_dir = {resolve_data_dir(data_config)})\n'
      f'  3. run: {command(STATS_COMMAND, data_config)}')


def _not_prepared(data_config, builder) -> DatasetError:
  if data_config.dataset == 'imagenet2012':
    return DatasetError(_imagenet_missing_message(
        data_config, f'ImageNet is not prepared in {builder.data_dir}.'))
  return DatasetError(
      f'{builder.info.full_name} is not prepared in {resolve_data_dir(data_config)}. Run: '
      f'{command(PREPARE_COMMAND, data_config)}')


def _open_source(data_config, splits: list[str]) -> sources_lib.Source:
  dataset = data_config.dataset
  if dataset == 'image_folder':
    if not data_config.folder or not os.path.isdir(_expand(data_config.folder)):
      raise DatasetError(
          f'data.folder={data_config.folder!r} is not a folder. For dataset=image_folder set it '
          'to a folder laid out as <folder>/<split>/<class>/<image files>.')
    try:
      return sources_lib.image_folder_source(_expand(data_config.folder))
    except Exception as e:  # pylint: disable=broad-except
      raise DatasetError(f'Could not list image folder {data_config.folder}: {e}') from e
  if dataset not in _TFDS_NAMES:
    raise DatasetError(f'Unknown data.dataset {dataset!r}; use one of: '
                       f'{", ".join(list(_TFDS_NAMES) + ["image_folder"])}.')
  builder = _tfds_builder(data_config)
  if not builder.info.splits:
    if builder.is_prepared():
      raise DatasetError(f'{builder.data_dir} holds no splits: re-run '
                         f'{command(PREPARE_COMMAND, data_config, "--overwrite")}.')
    # No files to read by position (tfds.testing.mock_data, or nothing written): go through
    # as_dataset, which fails if there is really nothing.
    try:
      return sources_lib.as_dataset_source(builder, splits)
    except Exception as e:  # pylint: disable=broad-except
      raise _not_prepared(data_config, builder) from e
  if builder.info.file_format is not None and str(
      getattr(builder.info.file_format, 'value', builder.info.file_format)) != 'tfrecord':
    raise DatasetError(f'{builder.data_dir} is stored as {builder.info.file_format}; prepare it '
                       'as TFRecord (the TFDS default).')
  return sources_lib.TfdsSource(builder)


def _segments(data_config, source, split: str, role: str) -> list[sources_lib.Segment]:
  try:
    segments = source.segments(split)
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(source, sources_lib.TfdsSource):
      have = ', '.join(source.builder.info.splits)
    else:
      have = ', '.join(source.split_sizes())
    msg = f'The {role} split {split!r} is not in {source.name} (it has: {have or "none"}).'
    if data_config.dataset == 'imagenet2012':
      msg = _imagenet_missing_message(data_config, msg, prepare_flags='--overwrite')
    raise DatasetError(msg) from e
  if not segments:
    raise DatasetError(f'The {role} split {split!r} of {source.name} is empty. Check data.'
                       f'{role}_split (a slice like "train[90%:]" of a tiny dataset can be empty).')
  missing = sorted({s.key for s in segments if s.key and not os.path.exists(s.key)})
  if missing:
    msg = (f'{len(missing)} file(s) of split {split!r} of {source.name} are missing, e.g. '
           f'{missing[0]}: the dataset is incomplete.')
    if data_config.dataset == 'imagenet2012':  # the tars must be there to prepare again
      raise DatasetError(_imagenet_missing_message(data_config, msg, prepare_flags='--overwrite'))
    if data_config.dataset == 'mini_imagenet':
      raise DatasetError(f'{msg} Make it again: {command(MINI_COMMAND, data_config)}')
    raise DatasetError(
        f'{msg} Prepare it again: {command(PREPARE_COMMAND, data_config, "--overwrite")}')
  return segments


def _open(data_config) -> _Opened:
  """Resolves and checks the dataset (cached per config): never builds anything."""
  key = _config_key(data_config)
  if key in _OPENED:
    return _OPENED[key]
  splits = [data_config.train_split, data_config.eval_split]
  if data_config.dataset == 'mini_imagenet' and any('validation' in s for s in splits):
    raise DatasetError(
        "mini_imagenet's 'validation' split is a placeholder (the builder labels val files by "
        "position against ImageNet's 1000 classes): use train slices, e.g. "
        "data.train_split='train[:90%]', data.eval_split='train[90%:]' (docs/data.md).")
  source = _open_source(data_config, splits)
  train = _segments(data_config, source, data_config.train_split, 'train')
  evaluation = _segments(data_config, source, data_config.eval_split, 'eval')
  if data_config.cache == 'memory':
    source = sources_lib.in_memory_source(source, splits)
    train = source.segments(data_config.train_split)
    evaluation = source.segments(data_config.eval_split)
  elif data_config.cache != 'none':
    raise DatasetError(f"data.cache must be 'none' or 'memory', got {data_config.cache!r}")
  num_classes = source.num_classes
  if data_config.dataset == 'mini_imagenet':
    num_classes = int(data_config.mini.num_classes)
  opened = _Opened(source, num_classes, train, evaluation)
  _OPENED[key] = opened
  return opened


def _needs_stats(data_config) -> bool:
  return (data_config.mean == 'image' or data_config.pca_noise == 'stats' or
          (data_config.mean == 'channel' and data_config.channel_mean is None))


def load_stats(data_config, source_name: str) -> dict | None:
  """The stats file's arrays, or None if the config needs none. Raises if needed and missing."""
  if not _needs_stats(data_config):
    return None
  path = stats_path(data_config, source_name)
  if not os.path.exists(path):
    if data_config.dataset == 'mini_imagenet':
      fix = f'run {command(MINI_COMMAND, data_config)} (making the data also computes its stats)'
    else:
      fix = f'run {command(STATS_COMMAND, data_config)} once'
    raise DatasetError(
        f'data.mean={data_config.mean!r} / data.pca_noise={data_config.pca_noise!r} need the '
        f'training split\'s mean image / PCA, which is not at {path}: {fix}; or set '
        "data.mean='channel' and data.pca_noise='code'.")
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def prepare(data_config, *, model_num_classes: int | None = None,
            image_size: int | None = None) -> DatasetInfo:
  """Checks the dataset is there and complete, before anything is compiled.

  dataset='mini_imagenet' is made (under a minute) when missing; 'imagenette' is downloaded by
  TFDS when missing (needs the internet). Anything else missing raises DatasetError saying which
  command fixes it. With `model_num_classes`, also checks the labels fit the model's head; with
  `image_size` (the model's input), also every preprocessing setting.
  """
  if data_config.dataset == 'mini_imagenet':
    from alexnet_jax.data import mini_imagenet  # pylint: disable=import-outside-toplevel
    if not mini_imagenet.is_made(data_config):
      _OPENED.clear()
      mini_imagenet.make(data_config)
  elif data_config.dataset == 'imagenette':
    builder = _tfds_builder(data_config)
    if not builder.is_prepared():
      try:
        builder.download_and_prepare()
      except Exception as e:  # pylint: disable=broad-except
        raise DatasetError(f'Could not download and prepare {builder.info.full_name} into '
                           f'{resolve_data_dir(data_config)}: {e}') from e
  opened = _open(data_config)
  stats = load_stats(data_config, opened.source.name)
  if stats is not None and int(stats['resize_size']) != data_config.resize_size:
    raise DatasetError(f'The stats file was computed at resize_size={int(stats["resize_size"])}, '
                       f'the config asks for {data_config.resize_size}: run '
                       f'{command(STATS_COMMAND, data_config)}.')
  if model_num_classes is not None and opened.num_classes > model_num_classes:
    raise DatasetError(
        f'{opened.source.name} has {opened.num_classes} classes but the model has '
        f'{model_num_classes} outputs: set model.num_classes={opened.num_classes}.')
  if image_size is not None:
    preprocessing(data_config, image_size, stats)
  return DatasetInfo(
      num_train=sources_lib.num_examples(opened.train),
      num_eval=sources_lib.num_examples(opened.eval),
      num_classes=opened.num_classes, name=opened.source.name,
      train_split=data_config.train_split, eval_split=data_config.eval_split,
      stats_file=stats_path(data_config, opened.source.name) if _needs_stats(data_config) else None)


# ------------------------------------------------------------------------------------- pipelines

def preprocessing(data_config, image_size: int, stats: dict | None) -> preprocess_lib.Preprocessing:
  """Resolves the config (and stats) into the numbers the image ops use."""
  r, s = data_config.resize_size, image_size
  if s > r:
    raise DatasetError(f'The crop ({s}) is larger than data.resize_size ({r}).')
  if data_config.mean == 'image':
    c = (r - s) // 2
    mean = np.asarray(stats['mean_image'])[c:c + s, c:c + s]  # the original code: central crop
  elif data_config.mean == 'channel':
    try:
      mean = np.asarray(data_config.channel_mean if data_config.channel_mean is not None
                        else stats['channel_mean'], np.float32)
    except ValueError:
      mean = np.zeros([0], np.float32)  # reported below
    if mean.shape != (3,):
      raise DatasetError(f'data.channel_mean={data_config.channel_mean!r}: three numbers (RGB, '
                         '0-255), e.g. (127.30,119.72,104.91), or None for the stats file\'s.')
  elif data_config.mean == 'none':
    mean = np.zeros([], np.float32)
  else:
    raise DatasetError(f"data.mean must be 'image', 'channel' or 'none', got {data_config.mean!r}")
  try:
    pca_scales, pca_vectors = preprocess_lib.pca_constants(data_config.pca_noise, stats)
  except ValueError as e:
    raise DatasetError(str(e)) from e
  if data_config.train_crop not in ('random', 'center'):
    raise DatasetError(f"data.train_crop must be 'random' or 'center', got {data_config.train_crop!r}")
  return preprocess_lib.Preprocessing(
      image_size=s, resize_size=r, resize_method=data_config.resize_method,
      antialias=bool(data_config.antialias), random_crop=data_config.train_crop == 'random',
      mirror=bool(data_config.mirror), fused_decode_crop=bool(data_config.fused_decode_crop),
      mean=np.asarray(mean, np.float32), pca_scales=pca_scales, pca_vectors=pca_vectors,
      pca_std=float(data_config.pca_std), input_scale=float(data_config.input_scale),
      truncated_jpeg_fraction=float(data_config.truncated_jpeg_fraction))


def _local_batch(global_batch_size: int, process_count: int) -> int:
  if global_batch_size % process_count:
    raise ValueError(f'Global batch {global_batch_size} is not divisible by {process_count} '
                     'processes.')
  return global_batch_size // process_count


def _share(segments, process_index: int, process_count: int):
  """Process `process_index`'s contiguous share; shares are disjoint and cover the split."""
  n = sources_lib.num_examples(segments)
  return sources_lib.cut(segments, process_index * n // process_count,
                         (process_index + 1) * n // process_count)


def _seed_int(*parts: int) -> int:
  """A non-negative int64 derived from `parts` (stable across runs and machines)."""
  return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]
             >> np.uint64(1))


def _options(data_config) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  if data_config.threads > 0:
    options.threading.private_threadpool_size = int(data_config.threads)
  return options


def _parallel(data_config) -> int:
  return tf.data.AUTOTUNE if data_config.parallel_calls < 0 else int(data_config.parallel_calls)


def _checked_labels(num_classes: int):
  """label -> int32 label, with any label outside 0..num_classes-1 turned into -1. Nothing in
  the graph fails on it (an error there would be dropped with the undecodable files): the
  iterators raise DatasetError when a -1 comes out."""
  def check(label):
    label = tf.cast(label, tf.int64)
    ok = tf.logical_and(label >= 0, label < num_classes)
    return tf.cast(tf.where(ok, label, -1), tf.int32)
  return check


def _decoded_or_placeholder(decode, args, placeholder):
  """A dataset of exactly one element: decode(*args), or `placeholder` if decoding fails (with a
  warning). Used per example through an order-keeping interleave (`_interleave_args`), so a file
  nothing can be decoded from keeps its place in the stream, with its label."""
  return (tf.data.Dataset.from_tensors(args).map(decode)
          .ignore_errors(log_warning=True)  # logs which file failed and why
          .concatenate(tf.data.Dataset.from_tensors(placeholder)).take(1))


def _interleave_args(data_config) -> dict:
  """Order-keeping parallel interleave over one-element datasets (a parallel map that can
  catch a failure per element)."""
  parallel = _parallel(data_config)
  return dict(cycle_length=parallel if parallel > 0 else tf.data.AUTOTUNE, block_length=1,
              num_parallel_calls=parallel, deterministic=True)


def _numpy_batches(datasets: list[tf.data.Dataset], keys: tuple[str, ...], num_classes: int,
                   what: str, check_decoded: bool) -> Iterator[dict[str, np.ndarray]]:
  """The batches of `datasets` (stacked in order when several) as numpy, with only `keys`.

  Raises DatasetError at a label outside the classes (-1 from `_checked_labels`), and with
  `check_decoded` at a batch in which not one image could be decoded (weight all 0): the data
  is not images TensorFlow can read, and training on nothing must not go on silently.
  """
  if len(datasets) == 1:
    iterator = datasets[0].as_numpy_iterator()
  else:
    iterator = (
        {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
        for batches in tf.data.Dataset.zip(tuple(datasets)).as_numpy_iterator())
  for batch in iterator:
    if batch['label'].min() < 0:
      raise DatasetError(
          f'{what} has a label outside 0..{num_classes - 1}, the classes the config expects '
          '(does data.dataset, data.tfds_name or data.mini.num_classes match the data on '
          'disk?).')
    if check_decoded and not batch['weight'].any():
      raise DatasetError(
          f'Not one of the {len(batch["weight"])} images of a batch of {what} could be decoded '
          '(see the warnings above): it does not hold images TensorFlow can read.')
    yield {key: batch[key] for key in keys}


def _window_plans(chunks, window_chunks: int, seed: int, process_index: int, start: int):
  """Yields (chunk ids, shuffle seed, elements to skip, stream positions of the first element
  and of the end) for every window from the one holding stream position `start` on, forever."""
  counts = np.array([c.count for c in chunks], np.int64)
  n = int(counts.sum())
  epoch, offset = divmod(start, n)
  while True:
    order = np.random.default_rng(_seed_int(seed, process_index, epoch)).permutation(len(chunks))
    position = epoch * n
    for w, lo in enumerate(range(0, len(order), window_chunks)):
      ids = order[lo:lo + window_chunks]
      size = int(counts[ids].sum())
      if offset >= size:
        offset -= size
      else:
        yield (ids.astype(np.int64), _seed_int(seed, process_index, epoch, w), offset,
               position + offset, position + size)
        offset = 0
      position += size
    epoch += 1


def train_dataset(data_config, *, image_size: int, global_batch_size: int, seed: int,
                  start_step: int = 0, process_index: int = 0,
                  process_count: int = 1) -> tf.data.Dataset:
  """The tf.data pipeline behind `train_iterator`."""
  opened = _open(data_config)
  p = preprocessing(data_config, image_size, load_stats(data_config, opened.source.name))
  local_batch = _local_batch(global_batch_size, process_count)
  chunks = sources_lib.split_into_chunks(
      _share(opened.train, process_index, process_count), int(data_config.chunk_size))
  if not chunks:
    raise DatasetError(f'Process {process_index} of {process_count} has no training examples: '
                       f'the split {data_config.train_split!r} is smaller than the process count.')
  keys = tf.constant([c.key for c in chunks], tf.string)
  starts = tf.constant([c.start for c in chunks], tf.int64)
  counts = tf.constant([c.count for c in chunks], tf.int64)
  window_chunks = int(data_config.window_chunks)
  source = opened.source

  plans = tf.data.Dataset.from_generator(
      lambda: _window_plans(chunks, window_chunks, seed, process_index, start_step * local_batch),
      output_signature=(tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64),
                        tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64),
                        tf.TensorSpec([], tf.int64)))

  def window(ids, shuffle_seed, skip, first_position, end_position):
    """(position, (encoded image, label), is_end) of the window's examples, then one end marker
    (end_position, ..., True)."""
    ds = tf.data.Dataset.from_tensor_slices(ids).interleave(
        lambda i: source.read(keys[i], starts[i], counts[i]), cycle_length=window_chunks,
        block_length=1, num_parallel_calls=window_chunks, deterministic=True)
    ds = ds.shuffle(int(data_config.shuffle_buffer), seed=shuffle_seed).skip(skip)
    ds = tf.data.Dataset.zip(tf.data.Dataset.range(first_position, end_position), ds,
                             tf.data.Dataset.from_tensors(False).repeat())
    end = (end_position, (tf.constant(b''), tf.constant(0, tf.int64)), tf.constant(True))
    return ds.concatenate(tf.data.Dataset.from_tensors(end))

  base_seed = _seed_int(seed, process_index, 1)
  check = _checked_labels(opened.num_classes)

  def decode(position, example, is_end):
    image_bytes, label = example
    key = tf.stack([tf.constant(base_seed, tf.int64), position])
    image = tf.cond(is_end, lambda: tf.zeros([image_size, image_size, 3], tf.float32),
                    lambda: preprocess_lib.train_image(image_bytes, key, p))
    return position, image, check(label), is_end

  # A file nothing can be decoded from (e.g. cut inside its header) fails `decode`, and
  # ignore_errors drops it with a warning. The positions that arrive then have a gap, which is
  # filled with placeholders (the mean image, label 0, weight 0: the loss ignores them), so every
  # example keeps its position and the batch of each step stays a function of (seed, step). The
  # end marker of each window closes a gap at its end, so even a window of only undecodable files
  # yields (placeholders) rather than have ignore_errors read on forever.
  def fill_gap(expected, element):
    """-> (next expected position, the examples from `expected` to `element`: placeholders for
    the gap, then the element unless it is an end marker)."""
    position, image, label, is_end = element
    gap = position - expected
    keep = tf.where(is_end, tf.constant(0, tf.int64), 1)

    def alone():
      return {'image': image[None], 'label': label[None], 'weight': tf.ones([1])}

    def with_gap():
      n = gap + keep
      return {'image': tf.concat([tf.zeros(tf.concat([[gap], tf.shape(image, tf.int64)], 0)),
                                  image[None]], 0)[:n],
              'label': tf.concat([tf.zeros([gap], tf.int32), label[None]], 0)[:n],
              'weight': tf.concat([tf.zeros([gap]), [1.0]], 0)[:n]}

    regular = tf.logical_and(tf.equal(gap, 0), tf.logical_not(is_end))
    return position + keep, tf.cond(regular, alone, with_gap)

  ds = plans.flat_map(window)
  ds = ds.map(decode, num_parallel_calls=_parallel(data_config), deterministic=True)
  ds = ds.ignore_errors(log_warning=True)  # the warning names the error
  ds = ds.scan(tf.constant(start_step * local_batch, tf.int64), fill_gap)
  # Each element is now a stack of 1 (or more, or 0) examples: re-cut into batches. The empty
  # stacks (end markers without a gap) are dropped first: rebatch handles them correctly but
  # logs a TensorFlow error line for each.
  ds = ds.filter(lambda e: tf.size(e['label']) > 0)
  ds = ds.rebatch(local_batch, drop_remainder=True).prefetch(int(data_config.prefetch))
  return ds.with_options(_options(data_config))


def train_iterator(data_config, *, image_size: int, global_batch_size: int, seed: int,
                   start_step: int = 0, process_index: int = 0, process_count: int = 1,
                   weights: bool = False) -> Iterator[dict[str, np.ndarray]]:
  """Infinite iterator of this process's batches: {'image': float32 [B, S, S, 3], 'label': int32
  [B]}, B = global_batch_size // process_count, and with `weights` also 'weight': float32 [B],
  1 for every example but 0 for the placeholder (the mean image, label 0) that stands in for
  a file nothing could be decoded from (a warning names the failure). Without `weights` the
  placeholder is trained on like any example, so a training loop should ask for them and weight
  its loss with them.

  The batch of step s depends only on (config, seed, s, process), undecodable files included, so
  start_step=s resumes exactly; getting there reads at most one window. A label outside the
  dataset's classes raises DatasetError, as does a batch with not one decodable image.

  `data_config.shards` (0: one per process) fixes how the split is divided: each process reads
  shards/process_count of them and stacks their batches in shard order, so the GLOBAL batch of a
  step is the same whatever the number of processes (a run can move between host counts)."""
  shards = int(data_config.get('shards', 0)) or process_count
  if shards % process_count:
    raise DatasetError(f'data.shards={shards} must be a multiple of the {process_count} '
                       'processes (or 0: one shard per process).')
  per_process = shards // process_count
  datasets = [train_dataset(
      data_config, image_size=image_size, global_batch_size=global_batch_size, seed=seed,
      start_step=start_step, process_index=process_index * per_process + j,
      process_count=shards) for j in range(per_process)]
  keys = ('image', 'label', 'weight') if weights else ('image', 'label')
  return _numpy_batches(datasets, keys, _open(data_config).num_classes,
                        f'the training split {data_config.train_split!r}', check_decoded=True)


def eval_dataset(data_config, *, image_size: int, global_batch_size: int, views: int,
                 process_index: int = 0, process_count: int = 1) -> tf.data.Dataset:
  """The tf.data pipeline behind `eval_iterator`."""
  opened = _open(data_config)
  p = preprocessing(data_config, image_size, load_stats(data_config, opened.source.name))
  if views not in (1, 10):
    raise ValueError(f'views must be 1 (central crop) or 10, got {views}')
  local_batch = _local_batch(global_batch_size, process_count)
  n = sources_lib.num_examples(opened.eval)
  largest_share = max(((i + 1) * n // process_count - i * n // process_count)
                      for i in range(process_count))
  num_batches = -(-largest_share // local_batch)
  segments = _share(opened.eval, process_index, process_count)
  source = opened.source
  keys = tf.constant([s.key for s in segments], tf.string)
  starts = tf.constant([s.start for s in segments], tf.int64)
  counts = tf.constant([s.count for s in segments], tf.int64)
  check = _checked_labels(opened.num_classes)

  def decode(image_bytes):
    return preprocess_lib.eval_views(image_bytes, views, p)

  # An undecodable file is evaluated as the mean image (all zeros after normalization), with its
  # label and mask True: it counts once, like every example of the split, as (almost surely) an
  # error; the run goes on, with a warning naming the failure.
  placeholder = tf.zeros([views, image_size, image_size, 3], tf.float32)

  def example(image_bytes, label):
    label = check(label)
    return _decoded_or_placeholder(decode, image_bytes, placeholder).map(
        lambda image: {'image': image, 'label': label, 'mask': tf.constant(True)})

  ds = tf.data.Dataset.range(len(segments)).flat_map(
      lambda i: source.read(keys[i], starts[i], counts[i]))
  ds = ds.interleave(example, **_interleave_args(data_config))
  # Padding (mask False) fills the last batches, so every process yields the same batch count.
  padding = {'image': tf.zeros([views, image_size, image_size, 3], tf.float32),
             'label': tf.constant(0, tf.int32), 'mask': tf.constant(False)}
  ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat())
  ds = ds.take(num_batches * local_batch).batch(local_batch, drop_remainder=True)
  ds = ds.prefetch(int(data_config.prefetch))
  return ds.with_options(_options(data_config))


def eval_iterator(data_config, *, image_size: int, global_batch_size: int, views: int,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Finite iterator: {'image': float32 [B, views, S, S, 3], 'label': int32 [B], 'mask': bool
  [B]}. Over all processes every example of the eval split appears exactly once with mask True,
  so the mask count is always DatasetInfo.num_eval: a file nothing can be decoded from is there
  as the mean image (a warning says so) with its own label. All processes yield the same number
  of batches (padding is masked), so multi-host evaluation cannot hang. A label outside the
  dataset's classes raises DatasetError."""
  ds = eval_dataset(data_config, image_size=image_size, global_batch_size=global_batch_size,
                    views=views, process_index=process_index, process_count=process_count)
  return _numpy_batches([ds], ('image', 'label', 'mask'), _open(data_config).num_classes,
                        f'the eval split {data_config.eval_split!r}', check_decoded=False)
