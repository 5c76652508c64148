"""TensorFlow as the data package uses it: quiet, and kept off any accelerator (JAX owns those).

Every module of the package that uses TensorFlow (or TFDS, which loads it) imports `tf` from
here first, so this runs before TensorFlow starts. It reads only the environment (tf_env.py):
TensorFlow's C++ log lines are off and its oneDNN rewrites are off, unless the environment
already says otherwise, e.g. because a command's entry set the log level from its --verbosity
before importing this.
"""

from alexnet_jax.data import tf_env

tf_env.set_defaults()

import tensorflow as tf  # noqa: E402

try:
  tf.config.set_visible_devices([], 'GPU')
  tf.config.set_visible_devices([], 'TPU')
except (RuntimeError, ValueError):  # Already initialized, or no such device type.
  pass

# The functions this package gives tf.data are plain graph code (tf.cond where a tensor decides),
# so they are traced as written: AutoGraph's conversion of their source would cost seconds at
# every start and change nothing.
plain = tf.autograph.experimental.do_not_convert
