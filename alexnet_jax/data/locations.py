"""Where the data of a config lives: the TFDS data dir, the manual download, the stored squares,
the stats files. Each folder the config names is checked to be one (a file there, or above it,
is a one-line DatasetError saying what to set)."""

from __future__ import annotations

import hashlib
import os
import re

from alexnet_jax.data.tf_setup import tf  # noqa: F401  (quiet, before TFDS loads TensorFlow)
import tensorflow_datasets as tfds

from alexnet_jax import config_schema
from alexnet_jax.data.errors import DatasetError


# The ILSVRC-2012 download's two tars, as they are put in the manual folder.
TRAIN_TAR = 'ILSVRC2012_img_train.tar'
VAL_TAR = 'ILSVRC2012_img_val.tar'


def _expand(path: str) -> str:
  return os.path.abspath(os.path.expanduser(path))


def _folder(field: str, path: str) -> str:
  """`path`, unless it, or a folder above it, is a file: then a DatasetError for `field`."""
  if os.path.isfile(path):
    raise DatasetError(f'data.{field}={path}: this path is a file. Set data.{field} to a folder '
                       '(new or existing), or move the file away.')
  parent = os.path.dirname(path)
  while parent and not os.path.exists(parent) and parent != os.path.dirname(parent):
    parent = os.path.dirname(parent)
  if parent and os.path.isfile(parent):
    raise DatasetError(f'data.{field}={path}: {parent} is a file, so no folder can be made '
                       f'under it. Set data.{field} to a folder elsewhere.')
  return path


def data_dir(data_config) -> str:
  """data.data_dir, or TFDS's default data dir ('~/tensorflow_datasets') when it is ''."""
  if data_config.data_dir:
    return _folder('data_dir', _expand(data_config.data_dir))
  return _folder('data_dir', _expand(getattr(getattr(tfds.core, 'constants', None), 'DATA_DIR',
                                             '~/tensorflow_datasets')))


def manual_dir(data_config) -> str:
  """Where the manual downloads (the ILSVRC-2012 tars) are: data.manual_dir or
  <data_dir>/downloads/manual."""
  if data_config.manual_dir:
    return _folder('manual_dir', _expand(data_config.manual_dir))
  return os.path.join(data_dir(data_config), 'downloads', 'manual')


def stats_dir(data_config) -> str:
  if data_config.stats_dir:
    return _folder('stats_dir', _expand(data_config.stats_dir))
  return os.path.join(data_dir(data_config), 'alexnet_jax_stats')


def squares_root(data_config) -> str:
  if data_config.squares_dir:
    return _folder('squares_dir', _expand(data_config.squares_dir))
  return os.path.join(data_dir(data_config), 'alexnet_jax_squares')


# The TFDS builder of each dataset (data.tfds_name overrides); the mini ImageNet is prepared by
# the real imagenet2012 builder.
TFDS_NAMES = {'imagenet2012': 'imagenet2012', 'mini_imagenet': 'imagenet2012',
              'imagenette': 'imagenette/full-size-v2'}


def tfds_builder(data_config):
  """The TFDS builder of the config's original dataset (nothing is read or built)."""
  name = data_config.tfds_name or TFDS_NAMES[data_config.dataset]
  try:
    return tfds.builder(name, data_dir=data_dir(data_config))
  except DatasetError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetError(f'TFDS has no dataset {name!r} ({e}). Set data.tfds_name.') from e


def source_name(data_config) -> str:
  """The name of the config's original dataset ('imagenet2012/5.1.0', 'image_folder:/path'),
  which names its stored squares and stats."""
  if data_config.dataset == 'image_folder':
    return f'image_folder:{_expand(data_config.folder)}'
  config_schema.check_value('data.dataset', data_config.dataset, error=DatasetError)
  return tfds_builder(data_config).info.full_name


def _clean(text: str) -> str:
  return re.sub(r'[^A-Za-z0-9.]+', '_', text).strip('_')


def squares_format(data_config) -> str:
  """data.squares_format: 'jpeg' (also for a config from before the field) or 'raw'."""
  return str(data_config.get('squares_format', 'jpeg'))


def squares_path(data_config, source_name: str) -> str:
  """The folder of the stored resize_size squares of the dataset `source_name`: JPEGs of a
  quality, or raw pixels (each in its own folder, so that both can be there)."""
  name = _clean(source_name)
  if len(name) > 80:  # an image folder's long path: keep the end, and a digest of the whole
    name = name[-60:].strip('_') + '_' + hashlib.sha1(source_name.encode()).hexdigest()[:8]
  kind = ('raw' if squares_format(data_config) == 'raw' else
          f'q{data_config.squares_quality}')
  return os.path.join(squares_root(data_config), f'{name}__{data_config.resize_size}px_{kind}')


def stats_path(data_config, source_name: str) -> str:
  """Where the stats command writes, and the pipeline looks for, this split's stats."""
  split = data_config.train_split
  digest = hashlib.sha1(split.encode()).hexdigest()[:8]  # 'train[:90%]' vs 'train[90%:]'
  name = _clean(source_name)
  if len(name) > 80:
    name = name[-60:].strip('_') + '_' + hashlib.sha1(source_name.encode()).hexdigest()[:8]
  name = f'{name}__{_clean(split)}_{digest}__{data_config.resize_size}.npz'
  return os.path.join(stats_dir(data_config), name)
