"""main.py, killed (SIGKILL) right after the asynchronous save of step KILL_STEP has started.

  python tests/kill_during_save.py KILL_STEP <main.py flags...>

Fault injection for the resume tests, kept out of the package: it wraps Checkpoints.save.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app  # noqa: E402

import main  # noqa: E402
from alexnet_jax.cli import flags as cli_flags  # noqa: E402
from alexnet_jax.record import checkpoint  # noqa: E402

KILL_STEP = int(sys.argv.pop(1))
_save = checkpoint.Checkpoints.save


def save_then_die(self, step, *args, **kwargs):
  _save(self, step, *args, **kwargs)
  if step == KILL_STEP:
    os.kill(os.getpid(), 9)


checkpoint.Checkpoints.save = save_then_die

if __name__ == '__main__':
  app.run(main.main, flags_parser=cli_flags.parse_flags)
