"""The environment TensorFlow reads as it loads: its C++ log level and its oneDNN rewrites.

TensorFlow reads TF_CPP_MIN_LOG_LEVEL and TF_ENABLE_ONEDNN_OPTS when it loads, so both are set
before it does: a command's entry passes its --verbosity to `follow_verbosity` (main.py and the
data commands, once absl has parsed the flags and before they import anything that loads
TensorFlow or JAX), and tf_setup.py, which every module that uses TensorFlow imports first, sets
what is still unset to the quiet defaults (`set_defaults`: for code that imports the pipeline
without a command, e.g. a test or a notebook). Nothing here reads the command line, and a
variable already set in the environment wins. No TensorFlow is imported here.
"""

from __future__ import annotations

import os

LOG_LEVEL = 'TF_CPP_MIN_LOG_LEVEL'
ONEDNN = 'TF_ENABLE_ONEDNN_OPTS'
QUIET = '3'  # no INFO, WARNING or ERROR line of TensorFlow's own
# oneDNN's rewrites serve matrix products that the image ops do not use, and otherwise announce
# themselves at every start.
ONEDNN_OFF = '0'


def log_level(verbosity: int) -> str:
  """TF_CPP_MIN_LOG_LEVEL for absl's --verbosity: 0 or more shows every line (INFO and up),
  -1 warnings and errors, -2 errors, less nothing."""
  return str(min(3, max(0, -int(verbosity))))


def follow_verbosity(verbosity: int | None) -> None:
  """TensorFlow's environment as the command line's --verbosity says (None: it was not given,
  and TensorFlow stays quiet). Call it before TensorFlow loads, and before JAX does: JAX sets
  TF_CPP_MIN_LOG_LEVEL to 1 (warnings and errors) when it loads, if nothing has set it."""
  os.environ.setdefault(LOG_LEVEL, QUIET if verbosity is None else log_level(verbosity))
  os.environ.setdefault(ONEDNN, ONEDNN_OFF)


def set_defaults() -> None:
  """Quiet and without oneDNN, for each variable not set yet."""
  os.environ.setdefault(LOG_LEVEL, QUIET)
  os.environ.setdefault(ONEDNN, ONEDNN_OFF)
