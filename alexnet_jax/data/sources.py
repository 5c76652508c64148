"""Where encoded images come from: a split as an ordered list of segments that can be read alone.

A segment is `count` records from record `start` of one TFRecord file (key = its path), or of an
in-memory table (key unused), together with the split they belong to and the position of the
first one in it. Reading any segment costs only that segment, which is what lets a resumed run
seek instead of re-reading an epoch, and lets processes take disjoint ranges of the same split.
Every record is (encoded image, label, name): the name (an ImageNet file name, an image
folder's relative path, or '') is what a message about an undecodable image says.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from alexnet_jax.data.tf_setup import plain, tf
import tensorflow_datasets as tfds


@dataclasses.dataclass(frozen=True)
class Segment:
  split: str     # the base split ('train', 'validation', ...)
  key: str       # TFRecord file, or '' for a table
  start: int     # first record in the file (or table row)
  count: int
  position: int  # position of the first record in its split


class Source:
  """Base: `segments(split)` in a fixed order and `read(key, start, count)` as tf.data."""
  name: str
  num_classes: int

  def segments(self, split: str) -> list[Segment]:
    raise NotImplementedError

  def read(self, key, start, count) -> tf.data.Dataset:
    """Dataset of (encoded image: string, label: int64, name: string); arguments may be
    tensors."""
    raise NotImplementedError


def num_examples(segments: list[Segment]) -> int:
  return sum(s.count for s in segments)


def cut(segments: list[Segment], begin: int, end: int) -> list[Segment]:
  """The segments covering examples [begin, end) of the concatenation of `segments`."""
  out, pos = [], 0
  for s in segments:
    lo, hi = max(begin, pos), min(end, pos + s.count)
    if lo < hi:
      out.append(Segment(s.split, s.key, s.start + lo - pos, hi - lo, s.position + lo - pos))
    pos += s.count
  return out


def split_into_chunks(segments: list[Segment], chunk_size: int) -> list[Segment]:
  """Segments of at most `chunk_size` examples, in order."""
  out = []
  for s in segments:
    for lo in range(0, s.count, chunk_size):
      out.append(Segment(s.split, s.key, s.start + lo, min(chunk_size, s.count - lo),
                         s.position + lo))
  return out


def absolute_ranges(split: str, sizes: dict[str, int]) -> list[tuple[str, int, int]]:
  """TFDS's reading of a split spec ('train[:90%]+validation') as (name, begin, end) ranges of
  splits of the given sizes. KeyError/ValueError for a split that is not there."""
  infos = {k: tfds.core.SplitInfo(name=k, shard_lengths=[n], num_bytes=0,
                                  filename_template=None) for k, n in sizes.items()}
  out = []
  for ins in tfds.core.splits.AbstractSplit.from_spec(split).to_absolute(infos):
    n = sizes[ins.splitname]
    out.append((ins.splitname, 0 if ins.from_ is None else ins.from_,
                n if ins.to is None else ins.to))
  return out


def segment_reader(source: Source, segments: list[Segment]):
  """(segment index i) -> dataset of (image, label, name, i, position in the split) of the
  examples of segments[i]."""
  keys = tf.constant([s.key for s in segments], tf.string)
  starts = tf.constant([s.start for s in segments], tf.int64)
  counts = tf.constant([s.count for s in segments], tf.int64)
  positions = tf.constant([s.position for s in segments], tf.int64)

  def read(i):
    return tf.data.Dataset.zip(
        source.read(keys[i], starts[i], counts[i]),
        tf.data.Dataset.range(positions[i], positions[i] + counts[i])).map(
            plain(lambda record, position: (*record, i, position)))
  return plain(read)


def read_in_order(source: Source, segments: list[Segment]) -> tf.data.Dataset:
  """(image, label, name, segment index, position) of every example of `segments`, in order."""
  return tf.data.Dataset.range(len(segments)).flat_map(segment_reader(source, segments))


class RecordFilesSource(Source):
  """Splits stored as sharded TFRecord files; `parse(record)` -> (image, label, name)."""

  def __init__(self, name: str, num_classes: int, files: dict[str, list[tuple[str, int]]],
               parse):
    self.name = name
    self.num_classes = num_classes
    self.files = files  # split -> [(path, number of records)], in order
    self._parse = parse

  def split_sizes(self) -> dict[str, int]:
    return {split: sum(n for _, n in shards) for split, shards in self.files.items()}

  def segments(self, split: str) -> list[Segment]:
    out = []
    for name, begin, end in absolute_ranges(split, self.split_sizes()):
      whole, position = [], 0
      for path, n in self.files[name]:
        if n:
          whole.append(Segment(name, path, 0, n, position))
        position += n
      out += cut(whole, begin, end)
    return out

  def read(self, key, start, count):
    return tf.data.TFRecordDataset(key).skip(start).take(count).map(plain(self._parse))


class TableSource(Source):
  """Splits as tables of (encoded image or file path, label, name) held in memory."""

  def __init__(self, name: str, num_classes: int, tables: dict[str, tuple[list, list, list]],
               are_paths: bool):
    self.name = name
    self.num_classes = num_classes
    self._are_paths = are_paths
    self._offsets, values, labels, names = {}, [], [], []
    for split, (split_values, split_labels, split_names) in tables.items():
      self._offsets[split] = (len(values), len(split_values))
      values += list(split_values)
      labels += list(split_labels)
      names += list(split_names)
    self._values = tf.constant(np.array(values, dtype=object), tf.string)
    self._labels = tf.constant(np.array(labels, dtype=np.int64), tf.int64)
    self._names = tf.constant(np.array(names, dtype=object), tf.string)

  def split_sizes(self) -> dict[str, int]:
    return {k: n for k, (_, n) in self._offsets.items()}

  def segments(self, split: str) -> list[Segment]:
    out = []
    for name, begin, end in absolute_ranges(split, self.split_sizes()):
      base, _ = self._offsets[name]
      if end > begin:
        out.append(Segment(name, '', base + begin, end - begin, begin))
    return out

  def read(self, key, start, count):
    del key
    start = tf.cast(start, tf.int64)
    stop = start + tf.cast(count, tf.int64)
    ds = tf.data.Dataset.from_tensor_slices(
        (self._values[start:stop], self._labels[start:stop], self._names[start:stop]))
    if self._are_paths:
      ds = ds.map(plain(lambda path, label, name: (tf.io.read_file(path), label, name)))
    return ds


class CachedSource(Source):
  """The segments of some splits of another source, read once into memory (data.cache=
  'memory'); each keeps its split and positions."""

  def __init__(self, source: Source, splits: list[str]):
    self.name = source.name
    self.num_classes = source.num_classes
    self._segments, values, labels, names = {}, [], [], []
    for split in dict.fromkeys(splits):
      self._segments[split] = []
      for seg in source.segments(split):
        self._segments[split].append(dataclasses.replace(seg, key='', start=len(values)))
        for image, label, name in source.read(seg.key, seg.start, seg.count).as_numpy_iterator():
          values.append(image)
          labels.append(int(label))
          names.append(name)
    self._table = TableSource(self.name, self.num_classes, {'all': (values, labels, names)},
                              are_paths=False)

  def segments(self, split: str) -> list[Segment]:
    return list(self._segments[split])

  def read(self, key, start, count):
    return self._table.read(key, start, count)
