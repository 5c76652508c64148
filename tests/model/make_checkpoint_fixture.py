"""Writes tests/model/fixtures/: a small training checkpoint and the logits its net gives.

  python tests/model/make_checkpoint_fixture.py

A two-column paper net at width 0.0625 and input size 99 (10 classes, the quickstart's init),
trained for 2 steps on one CPU device by the train step the loop runs, saved with the loop's
`Checkpoints` (orbax, with checksums), with the net's logits on fixed images at test time and
with a fixed dropout key. tests/model/test_checkpoint_compat.py restores it with the current
code and compares the logits, so checkpoints written by earlier code keep loading and giving
the same numbers. The fixture committed was written by the code of the commit that added this
script (before the model was split into layers, kernels and module), with jax 0.10.2; rewrite it
only when the checkpoint format is changed on purpose.
"""

import os
import shutil
import sys

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
# As the tests run (tests/conftest.py): XLA:CPU's numbers depend, in the last bit, on it.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from alexnet_jax import parallel  # noqa: E402
from alexnet_jax.data import device_preprocess  # noqa: E402
from alexnet_jax.record import checkpoint as checkpoint_lib  # noqa: E402
from alexnet_jax.train import setup as train_setup  # noqa: E402
from configs.alexnet import get_config  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
CHECKPOINTS = os.path.join(FIXTURES, 'checkpoints')
LOGITS = os.path.join(FIXTURES, 'logits.npz')
STEPS = 2
BATCH = 4
DROPOUT_KEY = 5


def config():
  """The fixture's run config: the quickstart at width 0.0625, 99-pixel inputs, one device."""
  c = get_config('quickstart')
  c.model.width = 0.0625
  c.model.input_size = 99   # odd and small: conv1's extra padding and pool5's 2x2 both matter
  c.mesh.model, c.mesh.data = 1, 1
  c.batch_size = BATCH
  return c


def images(batch: int, size: int) -> np.ndarray:
  """Fixed inputs of unit scale, from integer arithmetic (no random generator's stream)."""
  i = np.arange(batch * size * size * 3, dtype=np.uint64)
  words = (i * np.uint64(2654435761) + np.uint64(12345)) % np.uint64(2 ** 32)
  return ((words.astype(np.float64) / 2 ** 32) * 4.0 - 2.0).astype(np.float32).reshape(
      batch, size, size, 3)


def crops(batch: int, size: int) -> np.ndarray:
  return ((images(batch, size) + 2.0) * 63.0).astype(np.uint8)


def transform() -> device_preprocess.InputTransform:
  return device_preprocess.InputTransform(mean=np.float32(120.0), input_scale=1 / 60,
                                          pca_scales=None, pca_vectors=None, pca_std=0.0)


def logits_of(graphdef, params) -> dict[str, np.ndarray]:
  """Test-time logits and training-time logits (dropout key DROPOUT_KEY) on `images`."""
  @jax.jit
  def both(params, x, key):
    model = nnx.merge(graphdef, params)
    return model(x), model(x, train=True, dropout_key=key)

  test, train = both(params, jnp.asarray(images(2, config().model.input_size)),
                     jax.random.key(DROPOUT_KEY))
  return {'test': np.asarray(test), 'train': np.asarray(train)}


def _strip_machine_paths(directory: str) -> None:
  """orbax's commit markers name the folder they were written to: keep only the part under
  the project, so that the fixture names no machine's paths (orbax reads only their presence)."""
  project = ROOT + os.sep
  for folder, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(folder, name)
      with open(path, 'rb') as f:
        data = f.read()
      if project.encode() in data:
        with open(path, 'wb') as f:
          f.write(data.replace(project.encode(), b''))


def main():
  c = config()
  mesh = parallel.make_mesh(c.mesh, c.model, jax.devices()[:1])
  graphdef, state = train_setup.init_state(c)
  shardings = train_setup.state_shardings(mesh, state)
  state = jax.device_put(state, shardings)
  step_fn = train_setup.make_train_step(c, mesh, graphdef, shardings, transform())
  rng = np.random.default_rng(0)
  for step in range(STEPS):
    batch = {'image': crops(BATCH, c.model.input_size),
             'label': rng.integers(0, 10, BATCH).astype(np.int32),
             'weight': np.ones(BATCH, np.float32)}
    state, metrics = step_fn(state, batch, 0.01, step)
    print(f'step {step + 1}: loss {float(metrics["loss"]):.6f}')
  shutil.rmtree(CHECKPOINTS, ignore_errors=True)
  ckpt = checkpoint_lib.Checkpoints(CHECKPOINTS, keep=1, keep_best=0, async_save=False)
  ckpt.save(STEPS, state, {'step': STEPS})
  ckpt.close()
  _strip_machine_paths(CHECKPOINTS)
  np.savez(LOGITS, **logits_of(graphdef, state['params']))
  print(f'wrote {CHECKPOINTS} and {LOGITS}')


if __name__ == '__main__':
  main()
