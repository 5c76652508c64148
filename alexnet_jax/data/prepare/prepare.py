"""Makes a config's data ready, once: the originals, their stored squares, the stats.

    python -m alexnet_jax.data.prepare --config=configs/alexnet.py [--overwrite]

For ILSVRC-2012: TFDS's `imagenet2012` from the manual tars (if not prepared yet; --overwrite
prepares it again), then every image of the splits the config reads rescaled to the 256x256
squares the pipeline reads (make_squares.py; a stopped run, run again, goes on where it
stopped), then the training split's mean image and RGB PCA (stats.py). Each step is skipped
when its output is there and current.

The training command (alexnet_jax/cli) calls `prepare()` before training: it does the same for
the datasets that are quick to make (the mini ImageNet, which it also generates; imagenette,
which TFDS downloads; image folders), but for ILSVRC-2012 (hours of work) it only checks, and a
missing piece is a DatasetError naming this command. Whatever makes data holds the data dir's
lock (data_lock.py) from the first step to the last, so however many processes or jobs ask at
once, one makes the data and the others wait, then only check. Training and evaluation
themselves never make data; the streaming pipeline imports none of these commands.
"""

from __future__ import annotations

import os
import sys

from alexnet_jax.data import commands
from alexnet_jax.data import dataset
from alexnet_jax.data import locations
from alexnet_jax.data import squares
from alexnet_jax.data import stats_file
from alexnet_jax.data.errors import DatasetError
from alexnet_jax.data.locations import TRAIN_TAR, VAL_TAR
from alexnet_jax.data.prepare import data_lock
from alexnet_jax.data.prepare import make_squares
from alexnet_jax.data.prepare import mini_imagenet
from alexnet_jax.data.prepare import stats


def _prepare_tfds(data_config, overwrite: bool, log) -> None:
  """TFDS's preparation of the original dataset, when it is not prepared (or `overwrite`)."""
  import tensorflow_datasets as tfds

  builder = locations.tfds_builder(data_config)
  if builder.is_prepared() and not overwrite:
    return
  manual_dir = locations.manual_dir(data_config)
  if data_config.dataset == 'imagenet2012':
    tars = [os.path.join(manual_dir, f) for f in (TRAIN_TAR, VAL_TAR)]
    if not all(os.path.exists(t) for t in tars):
      raise DatasetError(commands.imagenet_missing_message(
          data_config, 'Missing ' + ', '.join(t for t in tars if not os.path.exists(t)) + '.'))
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  log(f'prepare: {builder.info.full_name} with TFDS into {builder.data_dir}')
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, download_mode=mode))
  except DatasetError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetError(f'Could not prepare {builder.info.full_name} into '
                       f'{locations.data_dir(data_config)}: {e}') from e


def _make_originals(data_config, make_large: bool, overwrite: bool, log) -> None:
  if data_config.dataset == 'mini_imagenet':
    if overwrite or not mini_imagenet.is_made(data_config):
      mini_imagenet.make(data_config, log=log)
  elif data_config.dataset == 'imagenette' or (
      data_config.dataset == 'imagenet2012' and make_large):
    _prepare_tfds(data_config, overwrite, log)


def _make(data_config, make_large: bool, overwrite: bool, log) -> None:
  """Every step, each skipped when its output is there and current (under the lock)."""
  _make_originals(data_config, make_large, overwrite, log)
  try:
    written = make_squares.make(data_config, log=log)
  except DatasetError:
    if data_config.dataset != 'mini_imagenet':
      raise
    # Its originals are damaged (e.g. a file deleted): they are ours, so make them again.
    _make_originals(data_config, make_large, True, log)
    written = make_squares.make(data_config, log=log)
  if stats_file.needed(data_config):
    path = locations.stats_path(data_config, locations.source_name(data_config))
    train_splits = set(squares.base_splits(data_config.train_split))
    if not os.path.exists(path) or train_splits & set(written):
      stats.compute_and_save(data_config, log=log)


def prepare(data_config, *, model_num_classes: int | None = None,
            image_size: int | None = None, make_large: bool = False, overwrite: bool = False,
            log=print) -> dataset.DatasetInfo:
  """Makes what is missing or stale (see the module docstring; ILSVRC-2012 only with
  `make_large`), holding the data dir's lock, then checks everything as
  `dataset.dataset_info` does and returns its info. A process that finds the lock held says
  so through `log` and waits."""
  data_dir = locations.data_dir(data_config)  # a data_dir that is a file: one line, at once

  def check() -> dataset.DatasetInfo:
    return dataset.dataset_info(data_config, model_num_classes=model_num_classes,
                                image_size=image_size)

  if data_config.dataset == 'imagenet2012' and not make_large:
    return check()
  if data_config.dataset == 'mini_imagenet':
    try:  # someone else's data (e.g. a real ILSVRC-2012) is refused before anything is written
      mini_imagenet.check_nothing_foreign(data_config)
    except DatasetError:
      # ... unless a process of this project took the data dir's lock: what may be its files
      # being written now are checked again under the lock (by mini_imagenet.make).
      if not data_lock.taken_before(data_dir):
        raise
  with data_lock.held(data_dir, log):
    _make(data_config, make_large, overwrite, log)
    return check()
