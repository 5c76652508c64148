"""`python -m alexnet_jax.data.prepare --config=configs/alexnet.py [--overwrite]`: makes the
config's data ready, once (prepare.py says what that is), and says where it is.

TensorFlow loads only after absl has parsed the flags, so that --verbosity sets its log level
(alexnet_jax/data/tf_env.py); by default it is quiet.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from alexnet_jax.data import tf_env



def main(argv):
  del argv
  verbosity = flags.FLAGS['verbosity']
  tf_env.follow_verbosity(verbosity.value if verbosity.present else None)
  from alexnet_jax.data import squares  # loads TensorFlow
  from alexnet_jax.data.errors import DatasetError
  from alexnet_jax.data.prepare import prepare
  from alexnet_jax import config_schema
  from alexnet_jax.record import fileio

  data_config = _CONFIG.value.data
  try:
    config_schema.check(data_config, 'data', error=DatasetError)
    info = prepare.prepare(data_config, make_large=True, overwrite=_OVERWRITE.value)
  except DatasetError as e:  # A message for a person, not a traceback.
    raise SystemExit(f'error: {e}') from None
  except fileio.WriteFailed as e:  # e.g. a full disk
    raise SystemExit(f'error: {e}. {e.remedy}, then run the same command again: it goes on '
                     'from the last finished piece.') from None
  except KeyboardInterrupt:
    print('Interrupted: stopped before the data was ready; finished pieces are kept, and the '
          'same command goes on from there.', file=sys.stderr)
    raise SystemExit(130) from None
  print(f'Ready: {info.name}, {info.num_train} training images ({info.train_split}) and '
        f'{info.num_eval} for evaluation ({info.eval_split}), stored at '
        f'{data_config.resize_size}x{data_config.resize_size} in '
        f'{squares.folder(data_config, info.name)}'
        + (f'; stats {info.stats_file}' if info.stats_file else ''))


if __name__ == '__main__':  # the flags are the command's (tests import `main` without them)
  _CONFIG = config_flags.DEFINE_config_file('config', 'configs/alexnet.py', 'Config file.')
  _OVERWRITE = flags.DEFINE_bool('overwrite', False,
                                 'Prepare the originals again even if already prepared.')
  app.run(main)
