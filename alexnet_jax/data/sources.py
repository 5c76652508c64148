"""Where encoded images come from: a split as an ordered list of segments that can be read alone.

A segment is (key, start, count): `count` records from position `start` of one TFRecord file
(key = its path), or of an in-memory/file-list table (key unused). Reading any segment costs only
that segment, which is what lets a resumed run seek instead of re-reading an epoch, and lets
processes take disjoint ranges of the same split.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds


@dataclasses.dataclass(frozen=True)
class Segment:
  key: str
  start: int
  count: int


class Source:
  """Base: `segments(split)` in a fixed order and `read(key, start, count)` as tf.data."""
  name: str
  num_classes: int

  def segments(self, split: str) -> list[Segment]:
    raise NotImplementedError

  def read(self, key, start, count) -> tf.data.Dataset:
    """Dataset of (encoded image: string, label: int64); arguments may be tensors."""
    raise NotImplementedError


def num_examples(segments: list[Segment]) -> int:
  return sum(s.count for s in segments)


def cut(segments: list[Segment], begin: int, end: int) -> list[Segment]:
  """The segments covering examples [begin, end) of the concatenation of `segments`."""
  out, pos = [], 0
  for s in segments:
    lo, hi = max(begin, pos), min(end, pos + s.count)
    if lo < hi:
      out.append(Segment(s.key, s.start + lo - pos, hi - lo))
    pos += s.count
  return out


def split_into_chunks(segments: list[Segment], chunk_size: int) -> list[Segment]:
  """Segments of at most `chunk_size` examples, in order."""
  out = []
  for s in segments:
    for lo in range(0, s.count, chunk_size):
      out.append(Segment(s.key, s.start + lo, min(chunk_size, s.count - lo)))
  return out


def _absolute(split: str, split_infos) -> list:
  """TFDS's reading of a split spec ('train[:90%]+validation') as (name, begin, end) ranges."""
  out = []
  for ins in tfds.core.splits.AbstractSplit.from_spec(split).to_absolute(split_infos):
    n = split_infos[ins.splitname].num_examples
    out.append((ins.splitname, 0 if ins.from_ is None else ins.from_,
                n if ins.to is None else ins.to))
  return out


class TfdsSource(Source):
  """A prepared TFDS dataset in TFRecord files, read directly (no decoding of the images)."""

  def __init__(self, builder):
    self.builder = builder
    self.name = builder.info.full_name
    self.num_classes = builder.info.features['label'].num_classes
    self._features = builder.info.features

  def segments(self, split: str) -> list[Segment]:
    splits = self.builder.info.splits
    out = []
    for name, begin, end in _absolute(split, splits):
      if end <= begin:
        continue
      for fi in splits[f'{name}[{begin}:{end}]'].file_instructions:
        out.append(Segment(os.fspath(fi.filename), fi.skip, fi.take))
    return out

  def read(self, key, start, count):
    def parse(record):
      example = self._features.deserialize_example(
          record, decoders={'image': tfds.decode.SkipDecoding()})
      return example['image'], tf.cast(example['label'], tf.int64)
    return tf.data.TFRecordDataset(key).skip(start).take(count).map(parse)


class TableSource(Source):
  """Splits as tables of (encoded image or file path, label) held in memory."""

  def __init__(self, name: str, num_classes: int, tables: dict[str, tuple[list, list]],
               are_paths: bool):
    self.name = name
    self.num_classes = num_classes
    self._are_paths = are_paths
    self._offsets, values, labels = {}, [], []
    for split, (split_values, split_labels) in tables.items():
      self._offsets[split] = (len(values), len(split_values))
      values += list(split_values)
      labels += list(split_labels)
    self._values = tf.constant(np.array(values, dtype=object), tf.string)
    self._labels = tf.constant(np.array(labels, dtype=np.int64), tf.int64)

  def split_sizes(self) -> dict[str, int]:
    return {k: n for k, (_, n) in self._offsets.items()}

  def segments(self, split: str) -> list[Segment]:
    if split in self._offsets:  # Also covers names that are not TFDS split specs.
      base, n = self._offsets[split]
      return [Segment('', base, n)] if n else []
    infos = {k: tfds.core.SplitInfo(name=k, shard_lengths=[n], num_bytes=0,
                                    filename_template=None)
             for k, (_, n) in self._offsets.items()}
    out = []
    for name, begin, end in _absolute(split, infos):
      base, _ = self._offsets[name]
      if end > begin:
        out.append(Segment('', base + begin, end - begin))
    return out

  def read(self, key, start, count):
    del key
    start = tf.cast(start, tf.int64)
    stop = start + tf.cast(count, tf.int64)
    ds = tf.data.Dataset.from_tensor_slices((self._values[start:stop], self._labels[start:stop]))
    if self._are_paths:
      ds = ds.map(lambda path, label: (tf.io.read_file(path), label))
    return ds


def image_folder_source(root: str, shuffle_seed: int = 0) -> TableSource:
  """TFDS's image-folder layout, <root>/<split>/<class>/<image>; classes sorted by name.

  Files are listed by TFDS, sorted, then put in a fixed random order so that any contiguous range
  (a chunk, a process's share, a slice like 'train[:90%]') mixes the classes.
  """
  builder = tfds.ImageFolder(root)
  label_feature = builder.info.features['label']
  tables = {}
  for split, examples in builder._split_examples.items():  # pylint: disable=protected-access
    examples = sorted(examples, key=lambda e: e.image_path)
    order = np.random.default_rng(shuffle_seed).permutation(len(examples))
    examples = [examples[i] for i in order]
    tables[split] = ([e.image_path for e in examples],
                     [label_feature.str2int(e.label) for e in examples])
  return TableSource(f'image_folder:{os.path.abspath(root)}', label_feature.num_classes, tables,
                     are_paths=True)


def in_memory_source(source: Source, splits: list[str]) -> TableSource:
  """Reads the given splits of `source` once into memory (data.cache='memory')."""
  tables = {}
  for split in splits:
    values, labels = [], []
    for seg in source.segments(split):
      for image, label in source.read(seg.key, seg.start, seg.count).as_numpy_iterator():
        values.append(image)
        labels.append(int(label))
    tables[split] = (values, labels)
  return TableSource(source.name, source.num_classes, tables, are_paths=False)


def as_dataset_source(builder, splits: list[str]) -> TableSource:
  """For builders that expose no TFRecord files (e.g. under tfds.testing.mock_data): reads each
  split once through `as_dataset` into memory. Only meant for small data."""
  tables = {}
  for split in splits:
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={'image': tfds.decode.SkipDecoding()})
    values, labels = [], []
    for example in ds.as_numpy_iterator():
      values.append(example['image'])
      labels.append(int(example['label']))
    tables[split] = (values, labels)
  return TableSource(builder.info.full_name, builder.info.features['label'].num_classes, tables,
                     are_paths=False)
