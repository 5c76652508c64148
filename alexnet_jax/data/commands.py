"""The one-time data commands, as the messages that ask for them print them.

A message adds a --config.data.<field>=<value> flag for every field that the command reads and
that the user's config sets otherwise than the config the command names (configs/alexnet.py, or
its quickstart for the mini ImageNet), so the printed command prepares what this run reads.
Only strings: nothing here runs a command.
"""

from __future__ import annotations

import os
import shlex

from alexnet_jax.data import locations
from alexnet_jax.data.locations import TRAIN_TAR, VAL_TAR

PREPARE_COMMAND = 'python -m alexnet_jax.data.prepare --config=configs/alexnet.py'
STATS_COMMAND = 'python -m alexnet_jax.data.stats --config=configs/alexnet.py'
MINI_COMMAND = 'python -m alexnet_jax.data.prepare --config=configs/alexnet.py:quickstart'

# The data fields each command reads, with their values in configs/alexnet.py (PAPER_DATA) and
# its quickstart (QUICKSTART_DATA); tests/data/test_data_datasets.py checks them against the
# configs.
PAPER_DATA = {
    'dataset': 'imagenet2012', 'tfds_name': '', 'data_dir': '', 'manual_dir': '', 'folder': '',
    'train_split': 'train', 'eval_split': 'validation', 'resize_size': 256,
    'resize_method': 'bilinear', 'antialias': True, 'truncated_jpeg_fraction': 0.0,
    'squares_dir': '', 'squares_quality': 90, 'squares_format': 'jpeg', 'stats_dir': '',
    'stats_max_examples': 0}
QUICKSTART_DATA = {
    'dataset': 'mini_imagenet', 'data_dir': '~/.cache/alexnet_jax/mini_imagenet',
    'manual_dir': '', 'train_split': 'train[:90%]', 'eval_split': 'train[90%:]',
    'resize_size': 128, 'resize_method': 'bilinear', 'antialias': True,
    'truncated_jpeg_fraction': 0.0, 'squares_dir': '', 'squares_quality': 90,
    'squares_format': 'jpeg', 'stats_dir': '', 'stats_max_examples': 0, 'mini.num_classes': 10,
    'mini.images_per_class': 300, 'mini.min_side': 80, 'mini.max_side': 220,
    'mini.jpeg_quality': 90, 'mini.seed': 0}
_COMMAND_FIELDS = {
    PREPARE_COMMAND: (PAPER_DATA, tuple(PAPER_DATA)),
    STATS_COMMAND: (PAPER_DATA, tuple(f for f in PAPER_DATA if f != 'eval_split')),
    MINI_COMMAND: (QUICKSTART_DATA, tuple(QUICKSTART_DATA)),
}


def command(base: str, data_config, extra: str = '') -> str:
  """`base` (one of the commands above) with flags for the user's data settings, so that it
  prepares what this config reads (e.g. --config.data.data_dir=... when it is not the default)."""
  defaults, fields = _COMMAND_FIELDS[base]
  flags = []
  for field in fields:
    value = data_config
    for part in field.split('.'):
      value = value.get(part, None) if value is not None else None
    if value is not None and value != defaults.get(field):
      flags.append(shlex.quote(f'--config.data.{field}={value}'))
  return ' '.join([base, *flags] + ([extra] if extra else []))


def imagenet_missing_message(data_config, what: str, extra: str = '') -> str:
  """`what`, then where the ILSVRC-2012 tars go and the command that prepares them."""
  manual = locations.manual_dir(data_config)
  found = [f for f in (TRAIN_TAR, VAL_TAR) if os.path.exists(os.path.join(manual, f))]
  return (
      f'{what}\nILSVRC-2012 is prepared once from the manual download (docs/data.md):\n'
      f'  1. put {TRAIN_TAR} and {VAL_TAR} (from image-net.org) in\n     {manual}\n'
      f'     (found there now: {", ".join(found) or "nothing"}; or set data.manual_dir)\n'
      f'  2. run: {command(PREPARE_COMMAND, data_config, extra)}\n'
      f'     (it writes to data.data_dir = {locations.data_dir(data_config)}: TFDS\'s '
      'imagenet2012, then its 256x256 images and their mean image and PCA)')
