"""TensorFlow as the data package uses it: quiet, and kept off any accelerator (JAX owns those).

Every module of the package that uses TensorFlow (or TFDS, which loads it) imports `tf` from
here first, so this runs before TensorFlow starts. It reads only the environment (tf_env.py):
TensorFlow's C++ log lines are off and its oneDNN rewrites are off, unless the environment
already says otherwise, e.g. because a command's entry set the log level from its --verbosity
before importing this.
"""

import contextlib
import signal
import threading

from alexnet_jax.data import tf_env


@contextlib.contextmanager
def _ctrl_c_after_import():
  """A Ctrl-C that arrives while TensorFlow loads is raised when the import has finished.

  A KeyboardInterrupt raised inside `import tensorflow` leaves TensorFlow half-initialised,
  and some releases (TF 2.21) then abort the process (SIGABRT from their preload check)
  instead of letting the command print its one line. Only the default handler (raise
  KeyboardInterrupt) is held back; a handler of the command's own (training's Interrupts,
  which only sets a flag) is left as it is.
  """
  if (threading.current_thread() is not threading.main_thread()
      or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
    yield
    return
  received = []
  signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, signal.default_int_handler)
  if received:
    raise KeyboardInterrupt


tf_env.set_defaults()

with _ctrl_c_after_import():
  import tensorflow as tf  # noqa: E402
  import tensorflow_datasets  # noqa: E402,F401  (it loads much of TensorFlow's Python)

try:
  tf.config.set_visible_devices([], 'GPU')
  tf.config.set_visible_devices([], 'TPU')
except (RuntimeError, ValueError):  # Already initialized, or no such device type.
  pass

# The functions this package gives tf.data are plain graph code (tf.cond where a tensor decides),
# so they are traced as written: AutoGraph's conversion of their source would cost seconds at
# every start and change nothing.
plain = tf.autograph.experimental.do_not_convert
