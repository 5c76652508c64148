"""Makes the stored squares (squares.py) of a config's dataset, once: the paper's preprocessing.

Every original image of the splits the config reads is decoded, its central square rescaled to
resize_size (antialiased bilinear by default), rounded to uint8 and stored as a JPEG of
data.squares_quality, in the original split's order. Shards of SHARD_EXAMPLES images are
written one at a time, each to a temporary file renamed when complete, and the manifest records
the plan first: a stopped run, run again, keeps the finished shards and goes on from there. A
split whose original changed (its fingerprint), or whose settings changed, is made again. An
original nothing can be decoded from is reported (split, position, file name) and stored as an
empty record, so that it keeps its place.

With data.squares_format='raw' the same rounded squares are stored as their pixels instead
(raw_squares.py: an undecodable original is a zero square), in their own folder, made the same
way (prepare/raw_squares.py makes them from JPEG squares instead, by decoding those).

Run through `python -m alexnet_jax.data.prepare`, which also makes the originals and the stats.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from alexnet_jax.data.tf_setup import plain, tf
import tensorflow_datasets as tfds

from alexnet_jax.data import image_ops
from alexnet_jax.data.prepare import originals
from alexnet_jax.data import raw_squares
from alexnet_jax.data import squares
from alexnet_jax.data import undecodable
from alexnet_jax.data.errors import DatasetError
from alexnet_jax.data.sources import cut, num_examples, read_in_order
from alexnet_jax.record import fileio

# Images per shard: ~60-120 MB of 256x256 JPEGs (403 MB raw), 626 shards for ILSVRC-2012's
# training set.
SHARD_EXAMPLES = 2048


class _Progress:
  """'squares train: 12,288/1,281,167 (1.0%) 850 img/s, 25m left': a bar on a terminal, else a
  line every `every` seconds."""

  def __init__(self, what: str, total: int, done: int, stream=None, every: float = 60.0):
    self.what, self.total, self.done, self.start_done = what, total, done, done
    self.stream = stream or sys.stdout
    self.bar = getattr(self.stream, 'isatty', lambda: False)()
    self.start = self.last = time.time()
    self.every = every

  def advance(self, n: int) -> None:
    self.done += n
    now = time.time()
    if not self.bar and (now - self.last < self.every or self.done >= self.total):
      return  # lines: one a minute (the summary line follows the last)
    self.last = now
    rate = (self.done - self.start_done) / max(now - self.start, 1e-9)
    left = (self.total - self.done) / rate if rate > 0 else 0
    line = (f'{self.what}: {self.done:,}/{self.total:,} ({100 * self.done / self.total:.1f}%) '
            f'{rate:.0f} img/s, {int(left // 60)}m{int(left % 60):02d}s left')
    self.stream.write(f'\r{line}\x1b[K' if self.bar else line + '\n')
    if self.bar and self.done >= self.total:
      self.stream.write('\n')
    self.stream.flush()


@dataclasses.dataclass(frozen=True)
class _Kind:
  """How the shards of one storage format are made from encoded images (the JPEG squares, the
  raw squares, or raw squares decoded from JPEG ones)."""
  what: str                                   # names the progress and log lines
  shard_file: Callable[[str, int, int], str]  # (split, index, count) -> the shard's file
  shard_files: Callable[[str], list[str]]     # a shard's file -> every file of the shard
  store: Callable                             # tf: encoded image -> what is stored (or raises)
  placeholder: Callable                       # () -> what an undecodable image is stored as
  write: Callable                             # (path, [(stored, label, name)], count)


def _kind(data_config) -> _Kind:
  """How the config's squares (data.squares_format) are made from the originals."""
  squaring = squares.squaring(data_config)
  if not squares.is_raw(data_config):
    return _Kind('squares', squares.shard_file, functools.partial(squares.shard_files, data_config),
                 lambda b: image_ops.stored_square(b, squaring), lambda: tf.constant(b''),
                 _write_records)
  return raw_kind(data_config, 'raw squares', lambda b: image_ops.rounded_square(b, squaring))


def raw_kind(data_config, what: str, store) -> _Kind:
  """How raw squares are made with `store` (tf: encoded image -> uint8 [R, R, 3])."""
  r = int(data_config.resize_size)
  return _Kind(what, raw_squares.shard_file, functools.partial(squares.shard_files, data_config),
               store, lambda: tf.zeros([r, r, 3], tf.uint8),
               lambda path, examples, count: _write_pixels(path, examples, count, r))


def _stored_or_placeholder(kind: _Kind, parallel: int):
  """(image, label, name) dataset -> (stored, decoded?, label, name), order kept: an image
  nothing can be decoded from becomes the kind's placeholder (no TensorFlow log line: the
  caller reports it)."""
  def one(image, label, name):
    stored = (tf.data.Dataset.from_tensors(image)
              .map(plain(lambda b: (kind.store(b), tf.constant(True))))
              .ignore_errors(log_warning=False)
              .concatenate(tf.data.Dataset.from_tensors((kind.placeholder(), tf.constant(False))))
              .take(1))
    return stored.map(plain(lambda s, decoded: (s, decoded, label, name)))
  return lambda ds: ds.interleave(plain(one), cycle_length=parallel, block_length=1,
                                  num_parallel_calls=parallel, deterministic=True)


def _temporary(path: str) -> str:
  """A name of this process's own to write `path` under: processes that make the same squares
  at once (several hosts starting on a new dataset) write the same bytes, and each rename is
  whole; `_remove_leftovers` deletes those of processes that are gone."""
  return os.path.join(os.path.dirname(path), f'.incomplete-{os.getpid()}-{os.path.basename(path)}')


def _commit(tmp: str, path: str) -> None:
  with open(tmp, 'rb+') as f:
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _write_records(path: str, examples, count: int) -> None:
  """A TFRecord shard of JPEG squares (squares.serialize) of the (JPEG, label, name)
  `examples`."""
  del count
  tmp = _temporary(path)
  with tf.io.TFRecordWriter(tmp) as writer:
    for image, label, name in examples:
      writer.write(squares.serialize(image, label, name))
  _commit(tmp, path)


def _write_pixels(path: str, examples, count: int, size: int) -> None:
  """A raw shard (raw_squares.py) of the (uint8 [R, R, 3] square, label, name) `examples`,
  `count` of them: the labels file, then the pixels file, each whole or not at all.

  The pixels are written in order to a plain .npy file, not through a memory map: on a full
  disk a write fails with ENOSPC (a one-line error, fileio.writing), where a store to a mapped
  page of a file with no room for it kills the process (SIGBUS).
  """
  tmp = _temporary(path)
  labels = np.zeros([count], np.int64)
  written = 0
  with open(tmp, 'wb') as f:
    np.lib.format.write_array_header_1_0(f, {
        'descr': np.lib.format.dtype_to_descr(np.dtype(np.uint8)), 'fortran_order': False,
        'shape': (count, size, size, 3)})
    for square, label, _ in examples:
      square = np.asarray(square)
      if written == count or square.shape != (size, size, 3) or square.dtype != np.uint8:
        raise ValueError(f'{path}: example {written} is {square.dtype} {square.shape}, of a '
                         f'shard of {count} uint8 {(size, size, 3)}')
      f.write(np.ascontiguousarray(square))
      labels[written] = label
      written += 1
  if written != count:
    raise DatasetError(f'{path}: {written} images read for a shard of {count}.')
  _write_labels(raw_squares.labels_file(path), labels)
  _commit(tmp, path)  # last: a pixels file that is there marks a finished shard


def _write_labels(path: str, labels: np.ndarray) -> None:
  tmp = _temporary(path)
  with open(tmp, 'wb') as f:
    np.save(f, labels)
  _commit(tmp, path)


def write_raw_shard(path: str, pixels: np.ndarray, labels: np.ndarray) -> None:
  """Writes a raw shard (raw_squares.py) of uint8 `pixels` [n, R, R, 3] and int64 `labels`
  [n] as the maker does (each file whole or not at all), e.g. a raw store of other pixels."""
  pixels, labels = np.asarray(pixels), np.asarray(labels)
  if pixels.ndim != 4 or pixels.shape[1] != pixels.shape[2] or labels.shape != pixels.shape[:1]:
    raise ValueError(f'pixels must be uint8 [n, R, R, 3] and labels [n], not {pixels.dtype} '
                     f'{pixels.shape} and {labels.shape}')
  _write_pixels(path, zip(pixels, labels, [''] * len(labels)), len(pixels), pixels.shape[1])


def _write_shard(original, segments, path: str, kind: _Kind, parallel: int, split: str,
                 first_position: int, progress: _Progress) -> list[list]:
  """Writes the squares of `segments` to `path` (via a temporary file); returns the
  undecodable ones as [position, name]."""
  ds = read_in_order(original, segments).map(
      plain(lambda image, label, name, *_: (image, label, name)))
  ds = ds.apply(_stored_or_placeholder(kind, parallel)).prefetch(64)
  bad = []

  def examples():
    for i, (stored, decoded, label, name) in enumerate(ds.as_numpy_iterator()):
      if not decoded:
        name = name.decode(errors='replace')
        bad.append([first_position + i, name])
        undecodable.report(original.name, split, first_position + i, name,
                           'stored as a placeholder (it keeps its place)')
      yield stored, label, name
      progress.advance(1)

  kind.write(path, examples(), num_examples(segments))
  return bad


def _remove_leftovers(path: str) -> None:
  """Deletes the unfinished shards of processes that are gone (a stopped or killed run)."""
  for name in os.listdir(path):
    if name.startswith('.incomplete-'):
      pid = name.split('-')[1]
      try:
        os.kill(int(pid), 0)
      except (ValueError, ProcessLookupError):
        os.remove(os.path.join(path, name))
      except PermissionError:  # alive, another user's
        pass


def _split_plan(original, split: str, kind: _Kind) -> dict:
  n = num_examples(original.segments(split))
  count = max(1, -(-n // SHARD_EXAMPLES))
  return {'num_examples': n, 'fingerprint': original.fingerprint(split),
          'shards': [[kind.shard_file(split, i, count),
                      min(SHARD_EXAMPLES, n - i * SHARD_EXAMPLES)] for i in range(count)],
          'complete': False, 'undecodable': []}


def _start_split(original, split: str, manifest: dict, path: str, kind: _Kind) -> dict:
  """The split's plan in the manifest: the recorded one if it still holds, else a new one,
  recorded, whose names hold no file (the old shards are deleted)."""
  plan = _split_plan(original, split, kind)
  old = manifest['splits'].get(split)
  same = old is not None and all(old.get(k) == plan[k]
                                 for k in ('num_examples', 'fingerprint', 'shards'))
  if not same:
    # Our own older shards of this split, and any file under the new plan's names that this
    # plan did not write (e.g. made with other settings): none of them is kept.
    for name in {n for n, _ in (old or {}).get('shards', []) + plan['shards']}:
      for file in kind.shard_files(name):
        if os.path.exists(os.path.join(path, file)):
          os.remove(os.path.join(path, file))
    manifest['splits'][split] = plan
    squares.write_manifest(path, manifest)
  plan = manifest['splits'][split]
  plan['complete'] = False
  return plan


def _make_split(original, split: str, manifest: dict, path: str, data_config, kind: _Kind,
                log) -> None:
  plan = _start_split(original, split, manifest, path, kind)
  segments = original.segments(split)
  done = [all(os.path.exists(os.path.join(path, f)) for f in kind.shard_files(name))
          for name, _ in plan['shards']]
  done_images = sum(n for (_, n), d in zip(plan['shards'], done) if d)
  if any(done):
    log(f'{kind.what} {split}: {sum(done)} of {len(done)} shards already written; going on '
        'from there')
  progress = _Progress(f'{kind.what} {split}', plan['num_examples'], done_images)
  parallel = int(data_config.parallel_calls) if data_config.parallel_calls > 0 else (
      os.cpu_count() or 2)
  first = 0
  for (name, n), is_done in zip(plan['shards'], done):
    if not is_done:
      plan['undecodable'] = [u for u in plan['undecodable'] if not first <= u[0] < first + n]
      # A full disk, as TensorFlow's writer reports it too (reading errors stay as they are).
      with fileio.writing(os.path.join(path, name), only=fileio.WRITE_ONLY_FAILURES):
        bad = _write_shard(original, cut(segments, first, first + n), os.path.join(path, name),
                           kind, parallel, split, first, progress)
      plan['undecodable'] += bad
      squares.write_manifest(path, manifest)
    first += n
  plan['complete'] = True
  squares.write_manifest(path, manifest)


def _write_tfds_metadata(path: str, manifest: dict, label_names: list[str] | None,
                         resize_size: int) -> None:
  """dataset_info.json and features.json, so that tfds.builder_from_directory(path) reads it."""
  complete = {s: i for s, i in manifest['splits'].items() if i.get('complete')}
  label = (tfds.features.ClassLabel(names=label_names) if label_names
           else tfds.features.ClassLabel(num_classes=manifest['num_classes']))
  features = tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(resize_size, resize_size, 3), encoding_format='jpeg'),
      'label': label, 'file_name': tfds.features.Text()})
  infos = [tfds.core.SplitInfo(name=s, shard_lengths=[n for _, n in i['shards']], num_bytes=0,
                               filename_template=None) for s, i in sorted(complete.items())]
  tfds.folder_dataset.write_metadata(
      data_dir=path, features=features, split_infos=infos, check_data=False,
      description=f'{manifest["source"]}: every image rescaled so its shorter side is '
                  f'{resize_size}, its central square, as JPEG '
                  '(alexnet_jax.data.prepare.make_squares)')


def needed_splits(data_config) -> list[str]:
  """The base splits the config reads."""
  specs = [data_config.train_split, data_config.eval_split]
  return list(dict.fromkeys(b for s in specs for b in squares.base_splits(s)))


def _check_splits(original, data_config) -> None:
  for role, spec in (('train', data_config.train_split), ('eval', data_config.eval_split)):
    unknown = [s for s in squares.base_splits(spec) if s not in original.split_sizes()]
    if unknown:
      raise DatasetError(f'The {role} split {unknown[0]!r} is not in {original.name} (it has: '
                         f'{", ".join(original.split_sizes()) or "none"}): check '
                         f'data.{role}_split.')


def make_splits(original, data_config, kind: _Kind, log) -> list[str]:
  """Makes the config's `kind` of squares of the splits it reads, from `original` (a source
  with fingerprints), where missing or stale; returns the splits written."""
  path = squares.folder(data_config)
  manifest = squares.read_manifest(path)
  if (manifest is None or manifest.get('settings') != squares.settings(data_config) or
      manifest.get('source') != original.name):
    manifest = {'format': squares.FORMAT, 'source': original.name,
                'num_classes': original.num_classes, 'settings': squares.settings(data_config),
                'splits': {}}
  os.makedirs(path, exist_ok=True)
  _remove_leftovers(path)
  written = []
  for split in needed_splits(data_config):
    if (not squares.missing_splits(manifest, data_config, [split], path) and
        manifest['splits'][split].get('fingerprint') == original.fingerprint(split)):
      continue
    start = time.time()
    _make_split(original, split, manifest, path, data_config, kind, log)
    info = manifest['splits'][split]
    log(f'{kind.what} {split}: {info["num_examples"]} images at {data_config.resize_size}x'
        f'{data_config.resize_size} in {path} ({time.time() - start:.1f}s; '
        f'{len(info["undecodable"])} undecodable)')
    written.append(split)
  return written


def make(data_config, *, log=print) -> list[str]:
  """Makes what is missing or stale of the squares of the splits the config reads, in its
  data.squares_format; returns the splits written. Without the originals, complete squares are
  kept as they are; missing ones are a DatasetError saying how to prepare the originals."""
  path = squares.folder(data_config)
  try:
    original = originals.open_original(data_config)
  except DatasetError:
    if not squares.missing_splits(squares.read_manifest(path), data_config,
                                  needed_splits(data_config), path):
      return []  # complete; the originals are not here to compare with
    raise
  _check_splits(original, data_config)
  written = make_splits(original, data_config, _kind(data_config), log)
  # TFDS has no feature for a shard of raw pixels: raw squares have no TFDS metadata.
  if written and not squares.is_raw(data_config):
    try:
      _write_tfds_metadata(path, squares.read_manifest(path),
                           getattr(original, 'label_names', None), int(data_config.resize_size))
    except ValueError as e:  # e.g. an unfinished split of another config in the folder
      log(f'squares: TFDS metadata not written ({e}); the pipeline does not need it')
  return written
