"""Prepares a TFDS dataset of the config once (ILSVRC-2012 from its manual download).

    python -m alexnet_jax.data.tfds_prepare --config=configs/alexnet.py [--overwrite]

For imagenet2012, ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar must be in data.manual_dir
(default <data.data_dir>/downloads/manual); see docs/data.md. --overwrite prepares again, e.g.
after adding the val tar to a dataset prepared without it. TFDS writes to a temporary folder and
renames it at the end, so an interrupted preparation leaves nothing that looks complete.
"""

from __future__ import annotations

import os


def run(data_config, overwrite: bool = False) -> None:
  import tensorflow_datasets as tfds
  from alexnet_jax.data import mini_imagenet, pipeline

  if data_config.dataset == 'mini_imagenet':
    mini_imagenet.make(data_config)
    return
  if data_config.dataset == 'image_folder':
    print('image_folder datasets need no preparation; compute their stats with '
          f'{pipeline.command(pipeline.STATS_COMMAND, data_config)}')
    return
  builder = pipeline._tfds_builder(data_config)  # pylint: disable=protected-access
  manual_dir = pipeline.resolve_manual_dir(data_config)
  if data_config.dataset == 'imagenet2012':
    tars = [os.path.join(manual_dir, f) for f in (pipeline.TRAIN_TAR, pipeline.VAL_TAR)]
    if not all(os.path.exists(t) for t in tars):
      raise pipeline.DatasetError(pipeline._imagenet_missing_message(  # pylint: disable=protected-access
          data_config, 'Missing ' + ', '.join(t for t in tars if not os.path.exists(t)) + '.'))
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, download_mode=mode))
  print(f'Prepared {builder.info.full_name} in {builder.data_dir}: {builder.info.splits}')
  print('Next, unless data.mean and data.pca_noise need no stats: '
        f'{pipeline.command(pipeline.STATS_COMMAND, data_config)}')


def main(argv):
  del argv
  from alexnet_jax.data.pipeline import DatasetError  # pylint: disable=import-outside-toplevel
  try:
    run(_CONFIG.value.data, overwrite=_OVERWRITE.value)
  except DatasetError as e:  # A message for a person, not a traceback.
    raise SystemExit(f'error: {e}') from None


if __name__ == '__main__':
  from absl import app, flags
  from ml_collections import config_flags

  _CONFIG = config_flags.DEFINE_config_file('config', 'configs/alexnet.py', 'Config file.')
  _OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Prepare again even if already prepared.')
  app.run(main)
