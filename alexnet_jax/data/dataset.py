"""A config's stored squares, opened and checked: the value the iterators read from.

`open_dataset(data_config)` checks that the squares the config reads are there and complete,
and returns a `Dataset`: the data settings, the stored files and each split's segments.
Whoever runs opens it once and passes it to `pipeline.train_iterator` and
`pipeline.eval_iterator`; nothing here remembers it (two datasets opened from one config are
two values, each reading the files on disk as they were when it was opened).
`dataset_info` is the check a run does at start-up, before anything is compiled: the
dataset's sizes, its stats file, and what the device does to its uint8 crops.

Nothing here makes data: a missing or half-made dataset is a one-line DatasetError naming the
command that makes it (the one-time commands are in prepare/, above this module).
"""

from __future__ import annotations

import dataclasses
import functools
import os

from alexnet_jax import config_schema
from alexnet_jax.data import commands
from alexnet_jax.data import device_preprocess
from alexnet_jax.data import locations
from alexnet_jax.data import raw_squares
from alexnet_jax.data import sources
from alexnet_jax.data import squares
from alexnet_jax.data import stats_file
from alexnet_jax.data.errors import DatasetError


@dataclasses.dataclass(frozen=True)
class Dataset:
  """The stored squares of a config, checked; read by the iterators (pipeline.py).

  `train` and `eval` are the two splits' segments as the iterators read them: from the stored
  files, or, with data.cache='memory', from this process's copy of their records, read into
  memory the first time an iterator needs them (and shared by every iterator of this value;
  raw squares: their shards, read whole as batches first need them).
  """
  config: object  # the data settings it was opened with (a copy: later changes do not reach it)
  stored: sources.Source
  num_classes: int
  stored_train: list[sources.Segment]
  stored_eval: list[sources.Segment]
  undecodable: dict[tuple[str, int], str]  # (split, position) -> file name, from the manifest

  @property
  def name(self) -> str:
    return self.stored.name

  @functools.cached_property
  def source(self) -> sources.Source:
    if self.config.cache != 'memory':
      return self.stored
    if isinstance(self.stored, raw_squares.RawSquaresSource):
      # Raw squares need no table of records: the source reads its shards themselves into
      # memory, each the first time a batch needs it (only the shards of the splits read).
      return self.stored.in_memory()
    return sources.CachedSource(self.stored, [self.config.train_split, self.config.eval_split])

  @property
  def train(self) -> list[sources.Segment]:
    if self.source is self.stored:
      return self.stored_train
    return self.source.segments(self.config.train_split)

  @property
  def eval(self) -> list[sources.Segment]:
    if self.source is self.stored:
      return self.stored_eval
    return self.source.segments(self.config.eval_split)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  num_train: int
  num_eval: int
  num_classes: int
  name: str
  train_split: str
  eval_split: str
  stats_file: str | None  # None when the config needs no stats file
  # The opened dataset: what the iterators read.
  dataset: Dataset = dataclasses.field(compare=False, repr=False)
  # What the device does to the uint8 crops (None unless dataset_info was given image_size).
  transform: device_preprocess.InputTransform | None = None


def make_command(data_config) -> str:
  """The command that makes the config's stored squares (and what they are made from)."""
  if data_config.dataset == 'mini_imagenet':
    return commands.command(commands.MINI_COMMAND, data_config)
  return commands.command(commands.PREPARE_COMMAND, data_config)


def _fix(data_config) -> str:
  if data_config.dataset == 'imagenet2012':
    return commands.imagenet_missing_message(data_config, 'Make them once:')
  return f'Run: {make_command(data_config)}'


def _segments(data_config, source, split: str, role: str) -> list[sources.Segment]:
  try:
    segments = source.segments(split)
  except (KeyError, ValueError) as e:
    have = ', '.join(source.split_sizes())
    raise DatasetError(f'The {role} split {split!r} is not in {source.name} (it has: '
                       f'{have or "none"}): {e}. {_fix(data_config)}') from e
  if not segments:
    raise DatasetError(f'The {role} split {split!r} of {source.name} is empty. Check data.'
                       f'{role}_split (a slice like "train[90%:]" of a tiny dataset can be empty).')
  return segments


def open_dataset(data_config) -> Dataset:
  """The config's stored squares, checked: never makes anything (prepare/ does)."""
  data_config = data_config.copy_and_resolve_references()
  splits = [data_config.train_split, data_config.eval_split]
  if data_config.dataset == 'mini_imagenet' and any('validation' in s for s in splits):
    raise DatasetError(
        "mini_imagenet's 'validation' split is a placeholder (the builder labels val files by "
        "position against ImageNet's 1000 classes): use train slices, e.g. "
        "data.train_split='train[:90%]', data.eval_split='train[90%:]' (docs/data.md).")
  config_schema.check(data_config, 'data', error=DatasetError)  # a bad choice fails here
  source = squares.open_squares(data_config, splits, _fix(data_config))
  train = _segments(data_config, source, data_config.train_split, 'train')
  evaluation = _segments(data_config, source, data_config.eval_split, 'eval')
  num_classes = source.num_classes
  if data_config.dataset == 'mini_imagenet':
    num_classes = int(data_config.mini.num_classes)
  manifest = squares.read_manifest(squares.folder(data_config, source.name)) or {}
  known = {(split, int(position)): name for split, info in manifest.get('splits', {}).items()
           for position, name in info.get('undecodable', [])}
  return Dataset(data_config, source, num_classes, train, evaluation, known)


def load_stats(data_config, source_name: str) -> dict | None:
  """The stats file's arrays, or None if the config needs none. Raises if needed and missing."""
  if not stats_file.needed(data_config):
    return None
  path = locations.stats_path(data_config, source_name)
  if not os.path.exists(path):
    if data_config.dataset == 'mini_imagenet':
      fix = f'run {commands.command(commands.MINI_COMMAND, data_config)}'
    else:
      fix = f'run {commands.command(commands.STATS_COMMAND, data_config)} once'
    raise DatasetError(
        f'data.mean={data_config.mean!r} / data.pca_noise={data_config.pca_noise!r} need the '
        f'training split\'s mean image / PCA, which is not at {path}: {fix}; or set '
        "data.mean='channel' and data.pca_noise='code'.")
  stats = stats_file.load(path)
  if int(stats['resize_size']) != data_config.resize_size:
    raise DatasetError(f'The stats file was computed at resize_size={int(stats["resize_size"])}, '
                       f'the config asks for {data_config.resize_size}: run '
                       f'{commands.command(commands.STATS_COMMAND, data_config)}')
  return stats


def check_crops(data_config, image_size: int) -> None:
  """DatasetError unless crops of `image_size` fit in the stored squares."""
  if image_size > data_config.resize_size:
    raise DatasetError(f'The crop ({image_size}) is larger than data.resize_size '
                       f'({data_config.resize_size}).')


def dataset_info(data_config, *, model_num_classes: int | None = None,
                 image_size: int | None = None) -> DatasetInfo:
  """Opens the config's dataset (`.dataset` of the result) and checks that the stored squares
  are there and complete and that the config fits them, before anything is compiled; never
  makes anything (prepare/ does). With `model_num_classes`, also checks the labels fit the
  model's head; with `image_size` (the model's input), also every preprocessing setting, and
  resolves what the device does."""
  dataset = open_dataset(data_config)
  stats = load_stats(dataset.config, dataset.name)
  transform = None
  if image_size is not None:
    check_crops(dataset.config, image_size)
    try:
      transform = device_preprocess.input_transform(dataset.config, image_size, stats)
    except ValueError as e:
      raise DatasetError(str(e)) from e
  if model_num_classes is not None and dataset.num_classes > model_num_classes:
    raise DatasetError(f'{dataset.name} has {dataset.num_classes} classes but the model '
                       f'has {model_num_classes}: set --config.model.num_classes='
                       f'{dataset.num_classes}.')
  return DatasetInfo(
      num_train=sources.num_examples(dataset.stored_train),
      num_eval=sources.num_examples(dataset.stored_eval),
      num_classes=dataset.num_classes, name=dataset.name,
      train_split=dataset.config.train_split, eval_split=dataset.config.eval_split,
      stats_file=(locations.stats_path(dataset.config, dataset.name)
                  if stats_file.needed(dataset.config) else None),
      transform=transform, dataset=dataset)
