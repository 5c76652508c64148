"""Input pipeline: TFDS datasets, the paper's augmentation in tf.data, the built-in mini ImageNet.

The only part of the package that imports TensorFlow. TensorFlow is only used for tf.data and
image ops, so it is kept off any accelerator (JAX owns those).
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tensorflow as tf  # noqa: E402

try:
  tf.config.set_visible_devices([], 'GPU')
  tf.config.set_visible_devices([], 'TPU')
except (RuntimeError, ValueError):  # Already initialized, or no such device type.
  pass
