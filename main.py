"""AlexNet in JAX: train, evaluate or summarize a config.

  python main.py --config=configs/alexnet.py --mode=summary
  python main.py --config=configs/alexnet.py:quickstart --workdir=runs/quickstart
  python main.py --config=configs/alexnet.py --workdir=runs/alexnet --config.model.lrn=False
"""

import logging
import sys

from absl import app
from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', None, 'A config file with get_config(arg), e.g. configs/alexnet.py:quickstart.',
    lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and the run record.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'summary'],
                  'train: train (resuming from the workdir); eval: evaluate the workdir\'s '
                  'checkpoint; summary: print the model table and exit (needs no data).')
flags.DEFINE_string('coordinator_address', None,
                    'host:port of process 0, for several processes started by hand (SLURM and '
                    'TPU VMs are detected without it).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (with --coordinator_address).')
flags.DEFINE_integer('process_id', None, 'This process\'s index (with --coordinator_address).')
flags.mark_flags_as_required(['config'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    # Library INFO logs (orbax, TFDS, the metric writer) would bury the progress lines;
    # `--verbosity=0` brings them back.
    absl_logging.set_verbosity(absl_logging.WARNING)
  from alexnet_jax import cli
  cli.run(FLAGS.config, mode=FLAGS.mode, workdir=FLAGS.workdir, argv=sys.argv,
          distributed={'coordinator_address': FLAGS.coordinator_address,
                       'num_processes': FLAGS.num_processes, 'process_id': FLAGS.process_id})


def parse_flags(argv):
  """absl's parser, with a one-line message instead of a traceback for a bad override."""
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    message = str(e).replace('\\n', ' ').strip("'")
    sys.exit(f'Bad command line: {message}\n(Config fields are locked: a misspelt or unknown key '
             'fails here. `--mode=summary` runs nothing and shows the config is valid.)')


if __name__ == '__main__':
  logging.getLogger('jax._src.xla_bridge').setLevel(logging.WARNING)
  app.run(main, flags_parser=parse_flags)
