"""`python -m alexnet_jax.data.stats --config=configs/alexnet.py`: the training split's mean image
and RGB PCA, computed again (`python -m alexnet_jax.data.prepare` computes them once, with the
squares).

Only the command's entry, kept here so that the command keeps its name: the work is
alexnet_jax/data/prepare/stats.py, imported after absl has parsed the flags, so that --verbosity
sets TensorFlow's log level before TensorFlow loads (tf_env.py). It holds the data dir's lock
while it computes (prepare/data_lock.py), as whatever makes data does.
"""

import contextlib
import os
import sys

from absl import app
from absl import flags

from alexnet_jax.data import tf_env


def main(argv):
  del argv
  verbosity = flags.FLAGS['verbosity']
  tf_env.follow_verbosity(verbosity.value if verbosity.present else None)
  from alexnet_jax.data import locations  # loads TensorFlow
  from alexnet_jax.data.errors import DatasetError
  from alexnet_jax.data.prepare import data_lock
  from alexnet_jax.data.prepare import stats
  from alexnet_jax import config_schema
  from alexnet_jax.record import fileio

  data_config = _CONFIG.value.data
  try:
    config_schema.check(data_config, 'data', error=DatasetError)
    data_dir = locations.data_dir(data_config)
    # A data dir that is not there holds no squares (the error says which command makes them);
    # one that is there may be in the middle of a preparation: its lock waits for it.
    with (data_lock.held(data_dir) if os.path.isdir(data_dir) else contextlib.nullcontext()):
      stats.compute_and_save(data_config)
  except DatasetError as e:  # A message for a person, not a traceback.
    raise SystemExit(f'error: {e}') from None
  except fileio.WriteFailed as e:  # e.g. a full disk
    raise SystemExit(f'error: {e}. {e.remedy}, then run the same command again.') from None
  except KeyboardInterrupt:
    print('Interrupted: the stats were not written (the file is replaced whole or not at '
          'all); run the same command again.', file=sys.stderr)
    raise SystemExit(130) from None
  except fileio.WriteFailed as e:  # e.g. a full disk
    raise SystemExit(f'error: {e}. {e.remedy}, then run the same command again.') from None
  except KeyboardInterrupt:
    print('Interrupted: the stats were not written (the file is replaced whole or not at '
          'all); run the same command again.', file=sys.stderr)
    raise SystemExit(130) from None


if __name__ == '__main__':
  from ml_collections import config_flags

  _CONFIG = config_flags.DEFINE_config_file('config', 'configs/alexnet.py',
                                            'Config file; its data block names the split.')
  app.run(main)
