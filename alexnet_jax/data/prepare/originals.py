"""The original dataset a config names, as the stored squares are made from it.

`open_original` gives it as a Source of (encoded original image, label, name) per split, in a
fixed order, with a fingerprint per split (what the squares were made from: when it changes, the
squares are stale). It never builds anything; a dataset that is not there is a DatasetError
saying which command prepares it. Used by the one-time commands only (make_squares.py,
prepare.py); the streaming pipeline reads the squares.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
from alexnet_jax.data.tf_setup import tf
import tensorflow_datasets as tfds

from alexnet_jax import config_schema
from alexnet_jax.data import commands
from alexnet_jax.data import locations
from alexnet_jax.data.errors import DatasetError
from alexnet_jax.data.sources import RecordFilesSource, Source, TableSource


def _digest(value) -> str:
  return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()


class _TfdsOriginal(RecordFilesSource):
  """A prepared TFDS dataset in TFRecord files, read directly (the images stay encoded)."""

  def __init__(self, builder):
    features = builder.info.features
    has_name = 'file_name' in features

    def parse(record):
      example = features.deserialize_example(record,
                                             decoders={'image': tfds.decode.SkipDecoding()})
      name = example['file_name'] if has_name else tf.constant(b'')
      return example['image'], tf.cast(example['label'], tf.int64), name

    files = {}
    for split, info in builder.info.splits.items():
      files[split] = [(os.fspath(fi.filename), int(fi.take))
                      for fi in info.file_instructions]
    super().__init__(builder.info.full_name, features['label'].num_classes, files, parse)
    self.label_names = list(features['label'].names)

  def fingerprint(self, split: str) -> str:
    return _digest([self.name, [(os.path.basename(f), n, os.path.getsize(f))
                                for f, n in self.files[split]]])


class _TableOriginal(TableSource):
  """Splits listed in memory: an image folder (paths) or a mock dataset (bytes)."""

  def __init__(self, name, num_classes, tables, are_paths, label_names, fingerprints):
    super().__init__(name, num_classes, tables, are_paths)
    self.label_names = label_names
    self._fingerprints = fingerprints

  def fingerprint(self, split: str) -> str:
    return self._fingerprints[split]


def image_folder(root: str, shuffle_seed: int = 0) -> _TableOriginal:
  """TFDS's image-folder layout, <root>/<split>/<class>/<image>; classes sorted by name.

  Files are listed by TFDS, sorted, then put in a fixed random order so that any contiguous range
  (a chunk, a process's share, a slice like 'train[:90%]') mixes the classes.
  """
  builder = tfds.ImageFolder(root)
  label_feature = builder.info.features['label']
  tables, fingerprints = {}, {}
  for split, examples in builder._split_examples.items():  # pylint: disable=protected-access
    examples = sorted(examples, key=lambda e: e.image_path)
    order = np.random.default_rng(shuffle_seed).permutation(len(examples))
    examples = [examples[i] for i in order]
    paths = [os.fspath(e.image_path) for e in examples]
    names = [os.path.relpath(p, root) for p in paths]
    tables[split] = (paths, [label_feature.str2int(e.label) for e in examples], names)
    stats = [os.stat(p) for p in paths]
    fingerprints[split] = _digest([names, [(s.st_size, s.st_mtime_ns) for s in stats]])
  return _TableOriginal(f'image_folder:{os.path.abspath(root)}', label_feature.num_classes,
                        tables, True, list(label_feature.names), fingerprints)


def _as_dataset_original(builder) -> _TableOriginal:
  """For builders that expose no TFRecord files (e.g. under tfds.testing.mock_data): reads each
  split once through `as_dataset` into memory. Only meant for small data."""
  tables, fingerprints = {}, {}
  for split in builder.info.splits or ('train', 'validation'):
    try:
      ds = builder.as_dataset(split=split, shuffle_files=False,
                              decoders={'image': tfds.decode.SkipDecoding()})
    except Exception:  # pylint: disable=broad-except
      continue  # no such split
    values, labels = [], []
    for example in ds.as_numpy_iterator():
      values.append(example['image'])
      labels.append(int(example['label']))
    tables[split] = (values, labels, [b''] * len(values))
    fingerprints[split] = _digest([builder.info.full_name, split,
                                   hashlib.sha1(b''.join(values)).hexdigest()])
  if not tables:
    raise ValueError(f'{builder.info.full_name} has no readable split')
  label = builder.info.features['label']
  return _TableOriginal(builder.info.full_name, label.num_classes, tables, False,
                        list(label.names), fingerprints)


def _not_prepared(data_config, builder) -> DatasetError:
  if data_config.dataset == 'imagenet2012':
    return DatasetError(commands.imagenet_missing_message(
        data_config, f'ImageNet is not prepared in {builder.data_dir}.'))
  return DatasetError(
      f'{builder.info.full_name} is not prepared in {locations.data_dir(data_config)}. Run: '
      f'{commands.command(commands.PREPARE_COMMAND, data_config)}')


def open_original(data_config) -> Source:
  """The config's original dataset; DatasetError (with the fix) if it is not there."""
  dataset = data_config.dataset
  if dataset == 'image_folder':
    folder = os.path.abspath(os.path.expanduser(data_config.folder or ''))
    if not data_config.folder or not os.path.isdir(folder):
      raise DatasetError(
          f'data.folder={data_config.folder!r} is not a folder. For dataset=image_folder set it '
          'to a folder laid out as <folder>/<split>/<class>/<image files>.')
    try:
      return image_folder(folder)
    except Exception as e:  # pylint: disable=broad-except
      raise DatasetError(f'Could not list image folder {data_config.folder}: {e}') from e
  config_schema.check_value('data.dataset', dataset, error=DatasetError)
  builder = locations.tfds_builder(data_config)
  if not builder.info.splits:
    if builder.is_prepared():
      raise DatasetError(f'{builder.data_dir} holds no splits: run '
                         f'{commands.command(commands.PREPARE_COMMAND, data_config, "--overwrite")}.')
    # No files to read by position (tfds.testing.mock_data, or nothing written): go through
    # as_dataset, which fails if there is really nothing.
    try:
      return _as_dataset_original(builder)
    except Exception as e:  # pylint: disable=broad-except
      raise _not_prepared(data_config, builder) from e
  if builder.info.file_format is not None and str(
      getattr(builder.info.file_format, 'value', builder.info.file_format)) != 'tfrecord':
    raise DatasetError(f'{builder.data_dir} is stored as {builder.info.file_format}; prepare it '
                       'as TFRecord (the TFDS default).')
  source = _TfdsOriginal(builder)
  for split, shards in source.files.items():
    missing = [f for f, _ in shards if not os.path.exists(f)]
    if missing:
      msg = (f'{len(missing)} file(s) of split {split!r} of {source.name} are missing, e.g. '
             f'{missing[0]}: the dataset is incomplete.')
      if dataset == 'imagenet2012':  # the tars must be there to prepare again
        raise DatasetError(commands.imagenet_missing_message(data_config, msg, '--overwrite'))
      if dataset == 'mini_imagenet':
        raise DatasetError(f'{msg} Make it again: '
                           f'{commands.command(commands.MINI_COMMAND, data_config)}')
      raise DatasetError(f'{msg} Prepare it again: '
                         f'{commands.command(commands.PREPARE_COMMAND, data_config, "--overwrite")}')
  return source
