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
from alexnet_jax.data.errors import DatasetError
from alexnet_jax.data.sources import RecordFilesSource

FORMAT = 1
MANIFEST = 'squares.json'
_FEATURES = {'image': tf.io.FixedLenFeature([], tf.string),
             'label': tf.io.FixedLenFeature([], tf.int64),
             'file_name': tf.io.FixedLenFeature([], tf.string)}


def settings(data_config) -> dict:
  """What the stored images depend on besides the originals (a change makes them stale)."""
  return {'resize_size': int(data_config.resize_size),
          'quality': int(data_config.squares_quality),
          'resize_method': str(data_config.resize_method),
          'antialias': bool(data_config.antialias),
          'truncated_jpeg_fraction': float(data_config.truncated_jpeg_fraction)}


def squaring(data_config) -> image_ops.Squaring:
  """How the config's squares are made from the originals (`image_ops.stored_square`)."""
  return image_ops.Squaring(**settings(data_config))


def folder(data_config, source_name: str | None = None) -> str:
  return locations.squares_path(data_config,
                                source_name or locations.source_name(data_config))


def base_splits(spec: str) -> list[str]:
  """The split names a spec reads: 'train[:90%]+validation' -> ['train', 'validation']."""
  names = [re.split(r'[\[(|]', part.strip(), maxsplit=1)[0].strip() for part in spec.split('+')]
  return list(dict.fromkeys(n for n in names if n))


def shard_file(split: str, index: int, count: int) -> str:
  return f'squares-{split}.tfrecord-{index:05d}-of-{count:05d}'


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
      not all(os.path.exists(os.path.join(path, f)) for f, _ in have[s]['shards']))]


def open_squares(data_config, splits: list[str], fix: str) -> RecordFilesSource:
  """The stored squares of the config's dataset, for the split specs `splits`; DatasetError
  (ending with `fix`, the command that makes them) if any is missing or incomplete."""
  name = locations.source_name(data_config)
  path = folder(data_config, name)
  manifest = read_manifest(path)
  needed = list(dict.fromkeys(b for s in splits for b in base_splits(s)))
  missing = missing_splits(manifest, data_config, needed)
  if missing:
    what = ('were made with other settings' if manifest is not None and
            manifest.get('settings') != settings(data_config) else
            f'do not hold the split(s) {", ".join(missing)}' if manifest is not None else
            'are not made')
    raise DatasetError(
        f'The {data_config.resize_size}x{data_config.resize_size} images of {name} (in {path}) '
        f'{what}. {fix}')
  files = {}
  for split, info in manifest['splits'].items():
    if not info.get('complete'):
      continue
    files[split] = [(os.path.join(path, f), int(n)) for f, n in info['shards']]
    lost = [f for f, _ in files[split] if not os.path.exists(f)]
    if split in needed and lost:
      raise DatasetError(f'{len(lost)} file(s) of the stored split {split!r} of {name} are '
                         f'missing, e.g. {lost[0]}: the folder is incomplete. {fix}')
  return RecordFilesSource(name, int(manifest['num_classes']), files, parse)
