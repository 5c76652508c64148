"""The stored squares as their pixels (data.squares_format='raw'), and reading them.

The same squares as the JPEG ones (squares.py: each original's central square rescaled to
R = resize_size and rounded to uint8), kept as the uint8 pixels themselves, so that the host
only copies whole squares into a batch (no decoding) and the crops are cut on the device. Per
split, shard i of n is two NumPy files, in the original split's order:

    squares-<split>.raw-<i>-of-<n>.npy          uint8 [count, R, R, 3]
    squares-<split>.raw-<i>-of-<n>.labels.npy   int64 [count]

The labels file is written before the pixels file, and each is renamed into place whole, so a
pixels file that is there marks a finished shard. An original nothing could be decoded from is
an all-zero square, listed (split, position, file name) in the folder's manifest, squares.json,
which is the same as the JPEG folder's but for its settings. Making them is
prepare/make_squares.py.

`RawSquaresSource` reads them: its tf.data elements are only row numbers and labels (cheap to
shuffle), and its NumPy methods gather the squares of a batch of rows from memory-mapped shards.
"""

from __future__ import annotations

import collections
import threading

import numpy as np
from alexnet_jax.data.tf_setup import tf

from alexnet_jax.data import sources

# Memory-mapped shards kept open at once. Python's mmap holds a file descriptor per map: this
# keeps a process well under the usual limit of 1024 (ILSVRC-2012's train and validation squares
# are ~650 shards of 2,048), while a training window (data.window_chunks chunks) touches far
# fewer. A map closed and opened again costs its page faults, not a read: the pages stay in the
# page cache.
MAX_OPEN_SHARDS = 256


def shard_file(split: str, index: int, count: int) -> str:
  """The pixels file of shard `index` of `count` of a split."""
  return f'squares-{split}.raw-{index:05d}-of-{count:05d}.npy'


def labels_file(pixels_file: str) -> str:
  """The labels file that goes with a pixels file (a name or a path)."""
  return pixels_file[:-len('.npy')] + '.labels.npy'


class RawSquaresSource(sources.Source):
  """Splits stored as raw square shards: `files` maps a split to its [(pixels file path,
  count)] in order; `undecodable` maps a split to the positions of its zero placeholders.

  Every example has a row: its place in the concatenation of all shards of all splits (in the
  order of `files`). `read` gives (row, label, name '') per example; `gather(rows)` the squares.
  With `in_memory`, each shard is read whole into this process's memory the first time a batch
  needs it (data.cache='memory'); otherwise it is memory-mapped, and the page cache keeps what
  the host's memory can hold, shared by every process of the host.
  """

  def __init__(self, name: str, num_classes: int, resize_size: int,
               files: dict[str, list[tuple[str, int]]], undecodable: dict[str, list[int]],
               in_memory: bool = False):
    self.name = name
    self.num_classes = num_classes
    self.resize_size = resize_size
    self._init_args = (name, num_classes, resize_size, files, undecodable)
    self._in_memory = in_memory
    self._layout = sources.RecordFilesSource(name, num_classes, files, parse=None)
    self._paths = [path for shards in files.values() for path, _ in shards]
    counts = [n for shards in files.values() for _, n in shards]
    self._first_rows = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    self._labels = np.concatenate([np.zeros([0], np.int64)] + [
        np.load(labels_file(path)).astype(np.int64, copy=False) for path in self._paths])
    self._decoded = self._decoded_flags(files, undecodable)
    self._keys = tf.constant(self._paths or [''], tf.string)
    self._tf_first_rows = tf.constant(self._first_rows, tf.int64)
    self._tf_labels = tf.constant(self._labels, tf.int64)
    self._open: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
    self._lock = threading.Lock()

  def _decoded_flags(self, files, undecodable) -> np.ndarray:
    decoded = np.ones([int(self._first_rows[-1])], bool)
    first = 0
    for split, shards in files.items():
      decoded[first + np.asarray(undecodable.get(split, []), np.int64)] = False
      first += sum(n for _, n in shards)
    return decoded

  def in_memory(self) -> 'RawSquaresSource':
    """The same source, its shards read whole into memory as batches first need them."""
    return RawSquaresSource(*self._init_args, in_memory=True)

  # ----------------------------------------------------------------------------- tf.data side

  def split_sizes(self) -> dict[str, int]:
    return self._layout.split_sizes()

  def segments(self, split: str) -> list[sources.Segment]:
    """As RecordFilesSource's: key = a shard's pixels file, start and count within it."""
    return self._layout.segments(split)

  def read(self, key, start, count) -> tf.data.Dataset:
    """(row: int64, label: int64, name: '') of `count` examples from `start` of shard `key`:
    a slice of two in-memory tensors, cheap per element (the training order shuffles these)."""
    match = tf.equal(self._keys, key)
    check = tf.debugging.assert_equal(tf.reduce_any(match), True,
                                      message='not a shard of these raw squares')
    with tf.control_dependencies([check]):
      shard = tf.argmax(tf.cast(match, tf.int32), output_type=tf.int64)
    first = tf.gather(self._tf_first_rows, shard) + tf.cast(start, tf.int64)
    rows = tf.range(first, first + tf.cast(count, tf.int64))
    return tf.data.Dataset.from_tensor_slices(
        (rows, tf.gather(self._tf_labels, rows), tf.fill(tf.shape(rows), '')))

  # ------------------------------------------------------------------------------- NumPy side

  def rows(self, key: str, start: int, count: int) -> np.ndarray:
    """int64 [count]: the rows of `count` examples from `start` of shard `key` (as `read`)."""
    first = self._first_rows[self._paths.index(key)] + start
    return np.arange(first, first + count, dtype=np.int64)

  def labels(self, rows) -> np.ndarray:
    return self._labels[np.asarray(rows, np.int64)]

  def decoded(self, rows) -> np.ndarray:
    """bool [B]: False for the zero placeholders of originals nothing could be decoded from."""
    return self._decoded[np.asarray(rows, np.int64)]

  def gather(self, rows, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 [B, R, R, 3]: the squares of `rows`, written into `out` if given (a buffer used
    again saves the page faults of a new one).

    One copy per square, straight from its shard into the batch. (A NumPy fancy index per shard
    copies twice, into a temporary and then into place: half the rate of this loop, whose
    Python cost is well under a microsecond per square of 192 KB.)
    """
    rows = np.asarray(rows, np.int64)
    r = self.resize_size
    out = np.empty([len(rows), r, r, 3], np.uint8) if out is None else out
    if out.shape != (len(rows), r, r, 3) or out.dtype != np.uint8:
      raise ValueError(f'out is {out.dtype} {out.shape}, not uint8 {(len(rows), r, r, 3)}')
    if len(rows) and (rows.min() < 0 or rows.max() >= self._first_rows[-1]):
      raise IndexError(f'rows outside 0..{self._first_rows[-1] - 1}')
    shard = np.searchsorted(self._first_rows, rows, side='right') - 1
    local = rows - self._first_rows[shard]
    arrays = {s: self._array(s) for s in np.unique(shard).tolist()}
    for i, (s, k) in enumerate(zip(shard.tolist(), local.tolist())):
      out[i] = arrays[s][k]
    return out

  def _array(self, shard: int) -> np.ndarray:
    """The pixels of a shard: opened (or read) the first time, then kept (see
    MAX_OPEN_SHARDS)."""
    with self._lock:
      array = self._open.get(shard)
      if array is None:
        array = np.load(self._paths[shard], mmap_mode=None if self._in_memory else 'r')
        self._open[shard] = array
        if not self._in_memory and len(self._open) > MAX_OPEN_SHARDS:
          self._open.popitem(last=False)
      self._open.move_to_end(shard)
      return array
