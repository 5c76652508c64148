"""TensorFlow as the data package uses it: quiet, and kept off any accelerator (JAX owns those).

Every module of the package that uses TensorFlow (or TFDS, which loads it) imports `tf` from
here first, so this runs before TensorFlow starts. TensorFlow's C++ log lines are off unless
--verbosity was given on the command line (absl's flag: 0 or more shows them all, -1 warnings
and errors, -2 errors), and TensorFlow's oneDNN rewrites, which only announce themselves here
(the image ops do not use them), are off. Either environment variable, if set, wins.
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
