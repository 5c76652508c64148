"""Everything but the input pipeline works where TensorFlow is not installed (e.g. the GPU hosts).

A fresh interpreter refuses to import TensorFlow, TFDS, TensorBoard and clu (as if they were not
installed), imports every module outside alexnet_jax.data and runs one real jitted, sharded
training step (`steps.build`, no data) on a tiny net, uint8 crops in: the float work of the input (colour noise, mean,
scale) runs inside the step, without TensorFlow.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKED = ('tensorflow', 'tensorflow_datasets', 'tensorboard', 'clu')

SCRIPT = r'''
import importlib.abc
import json
import math
import sys

BLOCKED = %r
attempts = []


class RefuseTensorFlow(importlib.abc.MetaPathFinder):
  """Answers as an environment without these packages would: ModuleNotFoundError."""

  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in BLOCKED:
      attempts.append(name)
      raise ModuleNotFoundError(f'No module named {name!r} (refused by the test)', name=name)
    return None


sys.meta_path.insert(0, RefuseTensorFlow())


import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax import figures, labels
from alexnet_jax.tools import ensemble
from alexnet_jax.tools import inputs
from alexnet_jax.tools import predict
from alexnet_jax.tools import report
from alexnet_jax.tools import trained
from alexnet_jax import parallel
from alexnet_jax.record import checkpoint
from alexnet_jax.cli import commands as cli
from alexnet_jax.data import device_preprocess
from alexnet_jax.train import evaluate
from alexnet_jax.model import lrn
from alexnet_jax.model import alexnet as model
from alexnet_jax.train import optim
from alexnet_jax.record import progress
from alexnet_jax.model import summary
from alexnet_jax.record import tracking
from alexnet_jax.train import loop
from alexnet_jax.train import restore
from alexnet_jax.train import setup as train_setup
from alexnet_jax.train import steps as steps_lib
from configs.alexnet import get_config

config = get_config('quickstart')
config.model.width = 0.125
config.model.input_size = 67
config.batch_size = 4

# The float work on the uint8 crops runs in the step: colour noise, mean image, input scale;
# built without data, the step's transform is a stand-in of the same shapes.
steps = steps_lib.build(config)
mesh = steps.mesh
state = steps.init_state()
before = jax.tree.map(np.array, state['params'])
size = config.model.input_size
rng = np.random.default_rng(0)
batch = parallel.global_batch(mesh, {
    'image': rng.integers(0, 256, (config.batch_size, size, size, 3), dtype=np.uint8),
    'label': rng.integers(0, config.model.num_classes, config.batch_size).astype(np.int32),
    'weight': np.ones(config.batch_size, np.float32)})
spec = steps.batch_spec(config.batch_size)
spec_matches = all((spec[k].shape, spec[k].dtype) == (v.shape, v.dtype)
                   and spec[k].sharding.is_equivalent_to(v.sharding, v.ndim)
                   for k, v in batch.items())
state, metrics = steps.train_step(state, batch, jnp.float32(0.01), jnp.int32(0))
loss = float(metrics['loss'])
changed = sum(int(not np.array_equal(a, np.asarray(b))) for a, b in zip(
    jax.tree.leaves(before), jax.tree.leaves(state['params'])))
print(json.dumps({
    'loss': loss, 'finite': math.isfinite(loss), 'changed': changed,
    'leaves': len(jax.tree.leaves(before)), 'mesh': dict(mesh.shape),
    'spec_matches': spec_matches,
    'loaded': sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED),
    'attempts': sorted(set(attempts)),
}))
'''


def test_model_optimizer_and_train_step_run_without_tensorflow():
  env = dict(os.environ)
  env.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
  result = subprocess.run([sys.executable, '-c', SCRIPT % (BLOCKED,)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-4000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out['loaded'] == [], out  # in particular 'tensorflow' is not in sys.modules
  assert out['finite'], out
  assert out['changed'] == out['leaves'], out  # every parameter took the update
  assert out['mesh'] == {'data': 2, 'model': 2}, out  # the columns really were split
  assert out['spec_matches'], out  # Steps.batch_spec describes the batch the step takes
