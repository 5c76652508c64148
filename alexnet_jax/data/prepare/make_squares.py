"""Makes the stored squares (squares.py) of a config's dataset, once: the paper's preprocessing.

Every original image of the splits the config reads is decoded, its central square rescaled to
resize_size (antialiased bilinear by default), rounded to uint8 and stored as a JPEG of
data.squares_quality, in the original split's order. Shards of SHARD_EXAMPLES images are
written one at a time, each to a temporary file renamed when complete, and the manifest records
the plan first: a stopped run, run again, keeps the finished shards and goes on from there. A
split whose original changed (its fingerprint), or whose settings changed, is made again. An
original nothing can be decoded from is reported (split, position, file name) and stored as an
empty record, so that it keeps its place.

Run through `python -m alexnet_jax.data.prepare`, which also makes the originals and the stats.
"""

from __future__ import annotations

import os
import sys
import time

from alexnet_jax.data.tf_setup import plain, tf
import tensorflow_datasets as tfds

from alexnet_jax.data import image_ops
from alexnet_jax.data.prepare import originals
from alexnet_jax.data import squares
from alexnet_jax.data import undecodable
from alexnet_jax.data.errors import DatasetError
from alexnet_jax.data.sources import cut, num_examples, read_in_order
from alexnet_jax.record import fileio

# Images per shard: ~60-120 MB of 256x256 JPEGs, 626 shards for ILSVRC-2012's training set.
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


def _stored_or_empty(squaring: image_ops.Squaring, parallel: int):
  """(image, label, name) dataset -> (stored square or b'', label, name), order kept: an image
  nothing can be decoded from becomes b'' (no TensorFlow log line: the caller reports it)."""
  def one(image, label, name):
    stored = (tf.data.Dataset.from_tensors(image)
              .map(plain(lambda b: image_ops.stored_square(b, squaring)))
              .ignore_errors(log_warning=False)
              .concatenate(tf.data.Dataset.from_tensors(tf.constant(b''))).take(1))
    return stored.map(plain(lambda s: (s, label, name)))
  return lambda ds: ds.interleave(plain(one), cycle_length=parallel, block_length=1,
                                  num_parallel_calls=parallel, deterministic=True)


def _write_shard(original, segments, path: str, squaring, parallel: int, split: str,
                 first_position: int, progress: _Progress) -> list[list]:
  """Writes the squares of `segments` to `path` (via a temporary file); returns the
  undecodable ones as [position, name]."""
  ds = read_in_order(original, segments).map(
      plain(lambda image, label, name, *_: (image, label, name)))
  ds = ds.apply(_stored_or_empty(squaring, parallel)).prefetch(64)
  # A name of this process's own: processes that make the same squares at once (several hosts
  # starting on a new dataset) write the same bytes, and each rename is whole.
  tmp = os.path.join(os.path.dirname(path),
                     f'.incomplete-{os.getpid()}-{os.path.basename(path)}')
  bad = []
  with tf.io.TFRecordWriter(tmp) as writer:
    for i, (image, label, name) in enumerate(ds.as_numpy_iterator()):
      if not image:
        name = name.decode(errors='replace')
        bad.append([first_position + i, name])
        undecodable.report(original.name, split, first_position + i, name,
                           'stored as a placeholder (it keeps its place)')
      writer.write(squares.serialize(image, label, name))
      progress.advance(1)
  with open(tmp, 'rb+') as f:
    os.fsync(f.fileno())
  os.replace(tmp, path)
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


def _split_plan(original, split: str, data_config) -> dict:
  n = num_examples(original.segments(split))
  count = max(1, -(-n // SHARD_EXAMPLES))
  return {'num_examples': n, 'fingerprint': original.fingerprint(split),
          'shards': [[squares.shard_file(split, i, count),
                      min(SHARD_EXAMPLES, n - i * SHARD_EXAMPLES)] for i in range(count)],
          'complete': False, 'undecodable': []}


def _make_split(original, split: str, manifest: dict, path: str, data_config, log) -> None:
  plan = _split_plan(original, split, data_config)
  old = manifest['splits'].get(split)
  same = old is not None and all(old.get(k) == plan[k]
                                 for k in ('num_examples', 'fingerprint', 'shards'))
  if not same:
    # Our own older shards of this split, and any file under the new plan's names that this
    # plan did not write (e.g. made with other settings): none of them is kept.
    for name in {n for n, _ in (old or {}).get('shards', []) + plan['shards']}:
      if os.path.exists(os.path.join(path, name)):
        os.remove(os.path.join(path, name))
    manifest['splits'][split] = plan
    squares.write_manifest(path, manifest)
  plan = manifest['splits'][split]
  plan['complete'] = False
  segments = original.segments(split)
  done = [os.path.exists(os.path.join(path, name)) for name, _ in plan['shards']]
  done_images = sum(n for (_, n), d in zip(plan['shards'], done) if d)
  if any(done):
    log(f'squares {split}: {sum(done)} of {len(done)} shards already written; going on from '
        'there')
  progress = _Progress(f'squares {split}', plan['num_examples'], done_images)
  squaring = squares.squaring(data_config)
  parallel = int(data_config.parallel_calls) if data_config.parallel_calls > 0 else (
      os.cpu_count() or 2)
  first = 0
  for (name, n), is_done in zip(plan['shards'], done):
    if not is_done:
      plan['undecodable'] = [u for u in plan['undecodable'] if not first <= u[0] < first + n]
      # A full disk, as TensorFlow's writer reports it too (reading errors stay as they are).
      with fileio.writing(os.path.join(path, name), only=fileio.WRITE_ONLY_FAILURES):
        bad = _write_shard(original, cut(segments, first, first + n), os.path.join(path, name),
                           squaring, parallel, split, first, progress)
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


def make(data_config, *, log=print) -> list[str]:
  """Makes what is missing or stale of the squares of the splits the config reads; returns
  the splits written. Without the originals, complete squares are kept as they are; missing
  ones are a DatasetError saying how to prepare the originals."""
  name_splits = [data_config.train_split, data_config.eval_split]
  needed = list(dict.fromkeys(b for s in name_splits for b in squares.base_splits(s)))
  path = squares.folder(data_config)
  manifest = squares.read_manifest(path)
  try:
    original = originals.open_original(data_config)
  except DatasetError:
    if not squares.missing_splits(manifest, data_config, needed, path):
      return []  # complete; the originals are not here to compare with
    raise
  for role, spec in (('train', data_config.train_split), ('eval', data_config.eval_split)):
    unknown = [s for s in squares.base_splits(spec) if s not in original.split_sizes()]
    if unknown:
      raise DatasetError(f'The {role} split {unknown[0]!r} is not in {original.name} (it has: '
                         f'{", ".join(original.split_sizes()) or "none"}): check '
                         f'data.{role}_split.')
  if (manifest is None or manifest.get('settings') != squares.settings(data_config) or
      manifest.get('source') != original.name):
    manifest = {'format': squares.FORMAT, 'source': original.name,
                'num_classes': original.num_classes, 'settings': squares.settings(data_config),
                'splits': {}}
  os.makedirs(path, exist_ok=True)
  _remove_leftovers(path)
  written = []
  for split in needed:
    if (not squares.missing_splits(manifest, data_config, [split], path) and
        manifest['splits'][split].get('fingerprint') == original.fingerprint(split)):
      continue
    start = time.time()
    _make_split(original, split, manifest, path, data_config, log)
    info = manifest['splits'][split]
    log(f'squares {split}: {info["num_examples"]} images at {data_config.resize_size}x'
        f'{data_config.resize_size} in {path} ({time.time() - start:.1f}s; '
        f'{len(info["undecodable"])} undecodable)')
    written.append(split)
  if written:
    try:
      _write_tfds_metadata(path, manifest, getattr(original, 'label_names', None),
                           int(data_config.resize_size))
    except ValueError as e:  # e.g. an unfinished split of another config in the folder
      log(f'squares: TFDS metadata not written ({e}); the pipeline does not need it')
  return written
