"""Input: the paper's 256x256 dataset made once, and the streaming pipeline that reads it.

The only part of the package that imports TensorFlow, used for tf.data and image ops and kept
off any accelerator (JAX owns those). Files, from the commands down:

  prepare.py        the one command: originals, their stored squares, the stats; what training
                    calls first
  make_squares.py   writes the stored squares        stats.py      mean image and RGB PCA
  mini_imagenet.py  the built-in miniature ImageNet  ilsvrc_archive.py  tars in ILSVRC's layout
  originals.py      opening the original datasets (TFDS, image folders)
  pipeline.py       what training reads: dataset_info, train_iterator, eval_iterator
  squares.py        the stored squares' format       image_ops.py  decode, crop, mirror (host)
  order.py          shares, chunks, windows, seeds   sources.py    segments of splits
  stats_file.py     the stats file                   undecodable.py  reporting unreadable images
  locations.py      where everything is              commands.py   the commands, as printed
  errors.py         DatasetError

Quiet by default: TensorFlow's C++ log lines are off unless --verbosity was given on the
command line (absl's flag: 0 or more shows them all, -1 warnings and errors, -2 errors), and
TensorFlow's oneDNN rewrites, which only announce themselves here (the image ops do not use
them), are off. Either environment variable, if set, wins.
"""

import os
import sys


def _tensorflow_log_level() -> str:
  """TF_CPP_MIN_LOG_LEVEL for the command line's --verbosity (3: nothing, when not given)."""
  for i, arg in enumerate(sys.argv):
    name, eq, value = arg.lstrip('-').partition('=')
    if arg.startswith('-') and name in ('verbosity', 'v'):
      value = value if eq else (sys.argv[i + 1] if i + 1 < len(sys.argv) else '0')
      try:
        return str(min(3, max(0, -int(value))))
      except ValueError:
        return '0'
  return '3'


os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', _tensorflow_log_level())
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

import tensorflow as tf  # noqa: E402

try:
  tf.config.set_visible_devices([], 'GPU')
  tf.config.set_visible_devices([], 'TPU')
except (RuntimeError, ValueError):  # Already initialized, or no such device type.
  pass
