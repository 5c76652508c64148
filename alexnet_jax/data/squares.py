"""The paper's dataset as stored once: every image rescaled so its shorter side is
`data.resize_size`, its central square cut, stored as a JPEG of `data.squares_quality`.

A folder per (dataset, resize_size, quality) under data.squares_dir holds, per split, TFRecord
shards `squares-<split>.tfrecord-<i>-of-<n>` of tf.train.Examples {'image': JPEG bytes,
'label': int64, 'file_name': the original's name}, in the original split's order (so split
slices such as 'train[:90%]' pick the same images as on the original), TFDS's metadata
(dataset_info.json, features.json: `tfds.builder_from_directory(folder)` reads it like any TFDS
dataset), and `squares.json`, the manifest: settings, shards, completeness and the original's
fingerprint per split. An original nothing can be decoded from keeps its position as a record
with empty image bytes (its placeholder; the manifest lists it).

With data.squares_format='raw' the same squares are kept as their uint8 pixels instead, in a
folder of their own (raw_squares.py), with the same manifest but for its settings.

This module reads that format (and knows how to write one record); making the squares is
`prepare/make_squares.py`, one of the commands above the streaming pipeline.
"""

from __future__ import annotations

import json
import os
import re

from alexnet_jax.data.tf_setup import tf

from alexnet_jax.record import fileio
from alexnet_jax.data import image_ops
from alexnet_jax.data import locations
from alexnet_jax.data import raw_squares
from alexnet_jax.data.errors import DatasetError
from alexnet_jax.data.sources import RecordFilesSource

FORMAT = 1
MANIFEST = 'squares.json'
_FEATURES = {'image': tf.io.FixedLenFeature([], tf.string),
             'label': tf.io.FixedLenFeature([], tf.int64),
             'file_name': tf.io.FixedLenFeature([], tf.string)}


def is_raw(data_config) -> bool:
  """Whether the config's squares are stored as raw pixels (raw_squares.py), not JPEGs."""
  return locations.squares_format(data_config) == 'raw'


def settings(data_config) -> dict:
  """What the stored images depend on besides the originals (a change makes them stale). Raw
  squares have no JPEG quality, and say they are raw."""
  if is_raw(data_config):
    return {'resize_size': int(data_config.resize_size),
            'resize_method': str(data_config.resize_method),
            'antialias': bool(data_config.antialias),
            'truncated_jpeg_fraction': float(data_config.truncated_jpeg_fraction),
            'squares_format': 'raw'}
  return {'resize_size': int(data_config.resize_size),
          'quality': int(data_config.squares_quality),
          'resize_method': str(data_config.resize_method),
          'antialias': bool(data_config.antialias),
          'truncated_jpeg_fraction': float(data_config.truncated_jpeg_fraction)}


def squaring(data_config) -> image_ops.Squaring:
  """How the config's squares are made from the originals (`image_ops.stored_square`; raw
  squares are its square before the JPEG encoding)."""
  return image_ops.Squaring(
      resize_size=int(data_config.resize_size), resize_method=str(data_config.resize_method),
      antialias=bool(data_config.antialias), quality=int(data_config.squares_quality),
      truncated_jpeg_fraction=float(data_config.truncated_jpeg_fraction))


def folder(data_config, source_name: str | None = None) -> str:
  return locations.squares_path(data_config,
                                source_name or locations.source_name(data_config))


def base_splits(spec: str) -> list[str]:
  """The split names a spec reads: 'train[:90%]+validation' -> ['train', 'validation']."""
  names = [re.split(r'[\[(|]', part.strip(), maxsplit=1)[0].strip() for part in spec.split('+')]
  return list(dict.fromkeys(n for n in names if n))


def shard_file(split: str, index: int, count: int) -> str:
  return f'squares-{split}.tfrecord-{index:05d}-of-{count:05d}'


def shard_files(data_config, name: str) -> list[str]:
  """Every file of the stored shard `name` (the manifest's): a raw shard's labels are apart."""
  return [name, raw_squares.labels_file(name)] if is_raw(data_config) else [name]


def read_manifest(path: str) -> dict | None:
  """The folder's manifest, or None if there is none (or it is not one)."""
  try:
    with open(os.path.join(path, MANIFEST)) as f:
      manifest = json.load(f)
  except (OSError, ValueError):
    return None
  return manifest if isinstance(manifest, dict) and manifest.get('format') == FORMAT else None


def write_manifest(path: str, manifest: dict) -> None:
  fileio.write_json_atomic(os.path.join(path, MANIFEST), manifest, indent=1)


def serialize(image: bytes, label: int, name: bytes | str) -> bytes:
  name = name.encode() if isinstance(name, str) else name
  feature = {
      'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
      'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
      'file_name': tf.train.Feature(bytes_list=tf.train.BytesList(value=[name]))}
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse(record):
  example = tf.io.parse_single_example(record, _FEATURES)
  return example['image'], example['label'], example['file_name']


def missing_splits(manifest: dict | None, data_config, splits: list[str],
                   path: str | None = None) -> list[str]:
  """The splits among `splits` that the folder does not hold complete, with these settings
  (and, given the folder's `path`, with every shard file there)."""
  if manifest is None or manifest.get('settings') != settings(data_config):
    return list(splits)
  have = manifest.get('splits', {})
  return [s for s in splits if not have.get(s, {}).get('complete') or (
      path is not None and
      not all(os.path.exists(os.path.join(path, f))
              for name, _ in have[s]['shards'] for f in shard_files(data_config, name)))]


def _lost_files(data_config, path: str, shards: list) -> list[str]:
  """The files of the manifest's `shards` that are not in the folder `path`."""
  files = [os.path.join(path, f) for shard, _ in shards for f in shard_files(data_config, shard)]
  return [f for f in files if not os.path.exists(f)]


def _check_made(data_config, manifest: dict | None, name: str, path: str, needed: list[str],
                fix: str) -> None:
  """DatasetError (ending with `fix`) unless the folder holds the `needed` splits, complete."""
  missing = missing_splits(manifest, data_config, needed)
  if not missing:
    return
  what = ('were made with other settings' if manifest is not None and
          manifest.get('settings') != settings(data_config) else
          f'do not hold the split(s) {", ".join(missing)}' if manifest is not None else
          'are not made')
  raw = 'raw ' if is_raw(data_config) else ''
  raise DatasetError(
      f'The {data_config.resize_size}x{data_config.resize_size} {raw}images of {name} (in '
      f'{path}) {what}. {fix}')


def open_squares(data_config, splits: list[str],
                 fix: str) -> RecordFilesSource | raw_squares.RawSquaresSource:
  """The stored squares of the config's dataset, for the split specs `splits`; DatasetError
  (ending with `fix`, the command that makes them) if any is missing or incomplete. Raw
  squares are a RawSquaresSource."""
  name = locations.source_name(data_config)
  path = folder(data_config, name)
  manifest = read_manifest(path)
  needed = list(dict.fromkeys(b for s in splits for b in base_splits(s)))
  _check_made(data_config, manifest, name, path, needed, fix)
  files = {}
  for split, info in manifest['splits'].items():
    if not info.get('complete'):
      continue
    lost = _lost_files(data_config, path, info['shards'])
    if split in needed and lost:
      raise DatasetError(f'{len(lost)} file(s) of the stored split {split!r} of {name} are '
                         f'missing, e.g. {lost[0]}: the folder is incomplete. {fix}')
    # Raw shards are opened now (their labels are read): a split not read that lost a file is
    # left out. TFRecord files are opened when read.
    if not (lost and is_raw(data_config)):
      files[split] = [(os.path.join(path, f), int(n)) for f, n in info['shards']]
  if not is_raw(data_config):
    return RecordFilesSource(name, int(manifest['num_classes']), files, parse)
  placeholders = {s: [int(p) for p, _ in manifest['splits'][s].get('undecodable', [])]
                  for s in files}
  return raw_squares.RawSquaresSource(name, int(manifest['num_classes']),
                                      int(data_config.resize_size), files, placeholders)
