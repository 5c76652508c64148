"""Makes a config's data ready, once: the originals, their stored squares, the stats.

    python -m alexnet_jax.data.prepare --config=configs/alexnet.py [--overwrite]

For ILSVRC-2012: TFDS's `imagenet2012` from the manual tars (if not prepared yet; --overwrite
prepares it again), then every image of the splits the config reads rescaled to the 256x256
squares the pipeline reads (make_squares.py; a stopped run, run again, goes on where it
stopped), then the training split's mean image and RGB PCA (stats.py). Each step is skipped
when its output is there and current.

Training calls `prepare()` first: it does the same for the datasets that are quick to make
(the mini ImageNet, which it also generates; imagenette, which TFDS downloads; image folders),
but for ILSVRC-2012 (hours of work) it only checks, and a missing piece is a DatasetError
naming this command. This module sits on top of the data package: the streaming pipeline
imports none of the commands.
"""

from __future__ import annotations

import os
import sys

from alexnet_jax.data import commands
from alexnet_jax.data import locations
from alexnet_jax.data import make_squares
from alexnet_jax.data import mini_imagenet
from alexnet_jax.data import pipeline
from alexnet_jax.data import squares
from alexnet_jax.data import stats
from alexnet_jax.data import stats_file
from alexnet_jax.data.errors import DatasetError
from alexnet_jax.data.ilsvrc_archive import TRAIN_TAR, VAL_TAR
from alexnet_jax.record import fileio


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
      pipeline.forget_opened()
      mini_imagenet.make(data_config, log=log)
  elif data_config.dataset == 'imagenette' or (
      data_config.dataset == 'imagenet2012' and make_large):
    _prepare_tfds(data_config, overwrite, log)


def prepare(data_config, *, model_num_classes: int | None = None,
            image_size: int | None = None, make_large: bool = False, overwrite: bool = False,
            log=print) -> pipeline.DatasetInfo:
  """Makes what is missing or stale (see the module docstring; ILSVRC-2012 only with
  `make_large`), then checks everything as `pipeline.dataset_info` does and returns its info."""
  locations.data_dir(data_config)  # a data_dir that is a file: one line, before anything else
  if data_config.dataset == 'imagenet2012' and not make_large:
    return pipeline.dataset_info(data_config, model_num_classes=model_num_classes,
                                 image_size=image_size)
  _make_originals(data_config, make_large, overwrite, log)
  try:
    written = make_squares.make(data_config, log=log)
  except DatasetError:
    if data_config.dataset != 'mini_imagenet':
      raise
    # Its originals are damaged (e.g. a file deleted): they are ours, so make them again.
    _make_originals(data_config, make_large, True, log)
    written = make_squares.make(data_config, log=log)
  if written:
    pipeline.forget_opened()
  if stats_file.needed(data_config):
    name = pipeline.open_dataset(data_config).source.name
    path = locations.stats_path(data_config, name)
    train_splits = set(squares.base_splits(data_config.train_split))
    if not os.path.exists(path) or train_splits & set(written):
      stats.compute_and_save(data_config, log=log)
  return pipeline.dataset_info(data_config, model_num_classes=model_num_classes,
                               image_size=image_size)


def main(argv):
  del argv
  data_config = _CONFIG.value.data
  try:
    info = prepare(data_config, make_large=True, overwrite=_OVERWRITE.value)
  except DatasetError as e:  # A message for a person, not a traceback.
    raise SystemExit(f'error: {e}') from None
  except fileio.WriteFailed as e:  # e.g. a full disk
    raise SystemExit(f'error: {e}. {e.remedy}, then run the same command again: it goes on '
                     'from the last finished piece.') from None
  except KeyboardInterrupt:
    print('Interrupted: stopped before the data was ready; finished pieces are kept, and the '
          'same command goes on from there.', file=sys.stderr)
    raise SystemExit(130) from None
  print(f'Ready: {info.name}, {info.num_train} training images ({info.train_split}) and '
        f'{info.num_eval} for evaluation ({info.eval_split}), stored at '
        f'{data_config.resize_size}x{data_config.resize_size} in '
        f'{squares.folder(data_config, info.name)}'
        + (f'; stats {info.stats_file}' if info.stats_file else ''))


if __name__ == '__main__':
  from absl import app, flags
  from ml_collections import config_flags

  _CONFIG = config_flags.DEFINE_config_file('config', 'configs/alexnet.py', 'Config file.')
  _OVERWRITE = flags.DEFINE_bool('overwrite', False,
                                 'Prepare the originals again even if already prepared.')
  app.run(main)
