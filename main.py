"""AlexNet in JAX: train, evaluate or summarize a config.

  python main.py --config=configs/alexnet.py --mode=summary
  python main.py --config=configs/alexnet.py:quickstart --workdir=runs/quickstart
  python main.py --config=configs/alexnet.py --workdir=runs/alexnet --config.model.lrn=False
  python main.py --config=configs/alexnet.py:quickstart --workdir=runs/abl/baseline --mode=eval
  python main.py --config=configs/alexnet.py:quickstart --workdir=runs/quickstart \
      --mode=predict --image=a.jpg b.png
  python main.py --config=configs/alexnet.py:quickstart --workdir=runs/quickstart --mode=figures
"""

import logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', None, 'A config file with get_config(arg), e.g. configs/alexnet.py:quickstart.',
    lock_config=True)
flags.DEFINE_string('workdir', None,
                    'Directory for checkpoints, metrics and the run record. --mode=eval also '
                    'takes several (comma-separated), or a folder of runs such as a sweep\'s '
                    'ROOT/NAME (all its seeds): it evaluates each and their ensemble.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'summary', 'predict', 'figures'],
                  'train: train (resuming from the workdir); eval: evaluate the workdir\'s '
                  'checkpoint (or an ensemble of several); summary: print the model table and '
                  'exit (needs no data); predict: the top-5 classes of --image files; figures: '
                  'the paper\'s Figures 3 and 4 into WORKDIR/figures/.')
flags.DEFINE_multi_string('image', [], '--mode=predict: an image file; repeat the flag, or '
                          'list more files after the flags: --image=a.jpg b.jpg c.png')
flags.DEFINE_string('output', None, '--mode=eval / predict: also write the results as JSON here.')
flags.DEFINE_integer('search_images', 0, '--mode=figures: training images searched for the '
                     'nearest neighbours of Figure 4 (0: the whole training split).')
flags.DEFINE_bool('tpu_vm', False, 'This is one host of a multi-host TPU VM: join the others '
                  '(JAX reads the TPU metadata). The sweep\'s tpu_vm backend passes it.')
flags.DEFINE_string('coordinator_address', None,
                    'host:port of process 0, for several processes started by hand (SLURM and '
                    'TPU VMs are detected without it).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (with --coordinator_address).')
flags.DEFINE_integer('process_id', None, 'This process\'s index (with --coordinator_address).')
flags.mark_flags_as_required(['config'])


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
  from alexnet_jax.cli import commands as cli
  status = cli.run(FLAGS.config, mode=FLAGS.mode, workdir=FLAGS.workdir, argv=sys.argv,
                   distributed={'coordinator_address': FLAGS.coordinator_address,
                                'num_processes': FLAGS.num_processes,
                                'process_id': FLAGS.process_id, 'tpu': FLAGS.tpu_vm},
                   images=images, output=FLAGS.output, search_images=FLAGS.search_images,
                   show_traceback=FLAGS.verbosity >= 1)
  if status:
    sys.exit(status)


def _config_argument(argv) -> str | None:
  """The value of --config on the command line (the file, maybe with ':arg')."""
  for i, arg in enumerate(argv[1:], 1):
    name, eq, value = arg.lstrip('-').partition('=')
    if name == 'config' and arg.startswith('-'):
      return value if eq else (argv[i + 1] if i + 1 < len(argv) else None)
  return None


def _override_keys(argv) -> list[str]:
  """KEY of every --config.KEY[=VALUE] (or --noconfig.KEY) on the command line."""
  keys = []
  for arg in argv[1:]:
    name = arg.lstrip('-').partition('=')[0]
    for prefix in ('config.', 'noconfig.'):
      if arg.startswith('-') and name.startswith(prefix):
        keys.append(name[len(prefix):])
  return keys


def _load_config(argument: str):
  """get_config(arg) of the config file, as ml_collections loads it (None if it fails)."""
  import importlib.util
  path, colon, arg = argument.partition(':')
  try:
    spec = importlib.util.spec_from_file_location('_config_for_messages', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(*([arg] if colon else []))
  except Exception:  # noqa: BLE001 - only used to explain another error
    return None


def _unknown_key_message(config, key: str) -> str | None:
  """'Unknown config key model.lrm ... (did you mean model.lrn?)', or None if `key` exists."""
  import difflib
  import ml_collections
  node, done = config, []
  parts = key.split('.')
  for i, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict):
      return (f'Unknown config key {key}: {".".join(done)} is a {type(node).__name__} value, '
              'not a group of fields.')
    if part not in node:
      fields = sorted(node.keys())
      close = difflib.get_close_matches(part, fields, n=3, cutoff=0.6)
      where = '.'.join(done) or 'the config'
      if close:
        hint = 'did you mean ' + ' or '.join('.'.join(done + [c] + parts[i + 1:])
                                             for c in close) + '?'
      else:
        hint = f'the fields of {where}: {", ".join(fields)}'
      return f'Unknown config key {key}: it does not exist ({hint})'
    node = node[part]
    done.append(part)
  return None


def _bad_value_message(config, message: str) -> str | None:
  """'Bad value for config key model.lrn: ...' from absl's 'flag --config.K=V: why'."""
  match = re.match(r'flag --config\.([\w.]+)=(.*?): (.*)$', message, re.DOTALL)
  if not match:
    return None
  key, value, why = match.groups()
  try:
    current = config
    for part in key.split('.'):
      current = current[part]
  except (KeyError, TypeError, AttributeError):
    return None
  del why  # absl's wording ("Non-boolean argument to boolean flag", ...) adds nothing here
  hint = 'use True or False' if isinstance(current, bool) else f'the default is {current!r}'
  kind = type(current).__name__
  article = 'an' if kind[0] in 'aeiou' else 'a'
  return f'Bad value for config key {key}: {value!r} is not {article} {kind} ({hint})'


def _one_line(text: str) -> str:
  return ' '.join(str(text).split())


def explain(argv, error: Exception) -> str:
  """The one-line message for a command line that absl / ml_collections refused."""
  message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
  argument = _config_argument(argv)
  if argument is None:
    return 'Bad command line: --config is required, e.g. --config=configs/alexnet.py'
  path = argument.partition(':')[0]
  if not os.path.isfile(path):
    return f'Bad --config={argument}: no such file {path}'
  if 'Error whilst parsing config file' in message:
    # ml_collections put get_config's traceback in the message: keep the exception's own text.
    lines = message.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r'\w+(Error|Exception): ', line)]
    text = ' '.join(lines[starts[-1]:]).split(': ', 1)[1] if starts else message
    return f'Bad --config={argument}: {_one_line(text)}'
  config = _load_config(argument)
  if config is None:
    return f'Bad command line: {_one_line(message)}'
  for key in _override_keys(argv):
    unknown = _unknown_key_message(config, key)
    if unknown:
      return unknown
  return _bad_value_message(config, message) or f'Bad command line: {_one_line(message)}'


def parse_flags(argv):
  """absl's parser, with a one-line message instead of a traceback for a bad command line."""
  try:
    rest = FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    sys.exit(explain(argv, e))
  try:
    FLAGS.config.get('model')  # a config file that failed to load raises here
  except OSError as e:
    sys.exit(explain(argv, e))
  return rest


if __name__ == '__main__':
  logging.getLogger('jax._src.xla_bridge').setLevel(logging.WARNING)
  try:
    app.run(main, flags_parser=parse_flags)
  except KeyboardInterrupt:  # before the command began (its imports): nothing to save yet
    print('Interrupted before the command started: nothing was changed.', file=sys.stderr)
    sys.exit(130)
