"""AlexNet in JAX: train, evaluate or summarize a config.

  python main.py --config=configs/alexnet.py --mode=summary
  python main.py --config=configs/alexnet.py:quickstart --workdir=runs/quickstart
  python main.py --config=configs/alexnet.py --workdir=runs/alexnet --config.model.lrn=False
  python main.py --config=configs/alexnet.py:quickstart --workdir=runs/abl/baseline --mode=eval
  python main.py --config=configs/alexnet.py:quickstart --workdir=runs/quickstart \
      --mode=predict --image=a.jpg b.png
  python main.py --config=configs/alexnet.py:quickstart --workdir=runs/quickstart --mode=figures
  python main.py --config=configs/alexnet.py --mode=compile --topology=v5e:2x4

The flags and the one-line messages for a bad command line: alexnet_jax/cli/flags.py; what each
--mode does: alexnet_jax/cli/commands.py.
"""

import logging
import sys

from absl import app
from absl import flags
from absl import logging as absl_logging

from alexnet_jax.cli import flags as cli_flags

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(cli_flags)  # --help lists them


def main(argv):
  images = list(FLAGS.image)
  if FLAGS.mode == 'predict':
    images += argv[1:]  # --image=a.jpg b.jpg c.jpg
  elif len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    # Library INFO logs (orbax, TFDS, the metric writer) would bury the progress lines;
    # `--verbosity=0` brings them back.
    absl_logging.set_verbosity(absl_logging.WARNING)
  # TensorFlow's own log level, before anything loads it (quiet unless --verbosity was given).
  from alexnet_jax.data import tf_env
  tf_env.follow_verbosity(FLAGS.verbosity if FLAGS['verbosity'].present else None)
  from alexnet_jax.cli import commands as cli
  status = cli.run(FLAGS.config, mode=FLAGS.mode, workdir=FLAGS.workdir, argv=sys.argv,
                   distributed={'coordinator_address': FLAGS.coordinator_address,
                                'num_processes': FLAGS.num_processes,
                                'process_id': FLAGS.process_id, 'tpu': FLAGS.tpu_vm},
                   images=images, output=FLAGS.output, search_images=FLAGS.search_images,
                   topology=FLAGS.topology,
                   show_traceback=FLAGS.verbosity >= 1)
  if status:
    sys.exit(status)


if __name__ == '__main__':
  logging.getLogger('jax._src.xla_bridge').setLevel(logging.WARNING)
  try:
    app.run(main, flags_parser=cli_flags.parse_flags)
  except KeyboardInterrupt:  # before the command began (its imports): nothing to save yet
    print('Interrupted before the command started: nothing was changed.', file=sys.stderr)
    sys.exit(130)
