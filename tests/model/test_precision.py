"""bfloat16 compute (model.dtype=bfloat16, float32 parameters) with the accelerators' kernels:
what runs in which precision, and a few training steps that follow float32's.

The net is the paper's layer structure at a quarter of its width on 99-pixel inputs (10
classes): every layer, LRN, pooling, dropout and exchange point of the paper's net, small enough
to compile and train a few steps on a CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alexnet_jax import parallel
from alexnet_jax.data import device_preprocess
from alexnet_jax.model import alexnet as model_lib
from alexnet_jax.train import steps as steps_lib
from configs.alexnet import get_config

SIZE = 99
BATCH = 8
STEPS = 4
# |bfloat16 loss - float32 loss| / float32 loss at every step. Measured: 0.008%, 0.0004%, 0.11%,
# 0.22% at steps 1-4 (losses 2.44 -> 1.76).
LOSS_TOLERANCE = 0.01
TRANSCENDENTAL = ('exp', 'exp2', 'log', 'log1p', 'pow', 'rsqrt', 'sqrt')


def _config(dtype: str):
  config = get_config()
  m = config.model
  m.width, m.input_size, m.num_classes = 0.25, SIZE, 10
  m.init, m.bias_init = 'he', 0.1
  m.platform = 'gpu'  # the accelerators' kernels, as a GPU runs them
  m.dtype = dtype
  config.mesh.model, config.mesh.data = 1, 1
  config.batch_size = BATCH
  return config


def _batch():
  rng = np.random.default_rng(0)
  return {'image': rng.integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8),
          'label': rng.integers(0, 10, BATCH).astype(np.int32),
          'weight': np.ones(BATCH, np.float32)}


def _equations(jaxpr):
  """Every equation of `jaxpr` and of the jaxprs inside it (jit, shard_map, custom rules)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          yield from _equations(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          yield from _equations(sub)


def test_bfloat16_keeps_lrn_softmax_and_loss_in_float32():
  """Forward and backward of the training loss: convolutions and matmuls take bfloat16; every
  transcendental op (LRN's power, the softmax's exp and log) and the loss's sums run in
  float32."""
  config = _config('bfloat16')
  mesh = parallel.make_mesh(config.mesh, config.model, jax.devices()[:1])
  graphdef, params = nnx.split(model_lib.create_model(config.model), nnx.Param)
  loss_fn = parallel.make_loss_fn(graphdef, mesh, config.model)
  batch = {'image': jnp.zeros((BATCH, SIZE, SIZE, 3)), 'label': jnp.zeros(BATCH, jnp.int32)}
  jaxpr = jax.make_jaxpr(lambda p: jax.value_and_grad(loss_fn, has_aux=True)(
      p, batch, jax.random.key(0), True))(params)
  equations = list(_equations(jaxpr.jaxpr))
  heavy = [e for e in equations if e.primitive.name in ('conv_general_dilated', 'dot_general')]
  assert len(heavy) == 3 * 8 - 1  # every layer's forward and two backward products (conv1: one)
  assert {v.aval.dtype for e in heavy for v in e.invars} == {jnp.dtype(jnp.bfloat16)}
  transcendental = [e for e in equations if e.primitive.name in TRANSCENDENTAL]
  names = {e.primitive.name for e in transcendental}
  assert {'pow', 'exp', 'log'} <= names, names  # LRN's power; log_softmax
  assert {v.aval.dtype for e in transcendental for v in e.outvars} == {jnp.dtype(jnp.float32)}
  # The logits leave the net in float32: the loss's reductions over classes and examples too.
  # (Over the 10 classes: log_softmax's max and sum, its gradient's sum; the top-k counts sum
  # booleans as integers.)
  sums = [e for e in equations if e.primitive.name in ('reduce_sum', 'reduce_max')
          and e.invars[0].aval.shape[-1:] == (10,)
          and jnp.issubdtype(e.invars[0].aval.dtype, jnp.floating)]
  assert len(sums) >= 3 and all(e.invars[0].aval.dtype == jnp.float32 for e in sums)


@pytest.fixture(scope='module')
def losses():
  """The losses of STEPS training steps (the loop's train step, one device, the same batch
  each step so that they fall) in float32 and in bfloat16, from the same parameters."""
  out = {}
  transform = device_preprocess.InputTransform(
      mean=np.float32(120.0), input_scale=1 / 60, pca_scales=None, pca_vectors=None, pca_std=0.0)
  for dtype in ('float32', 'bfloat16'):
    config = _config(dtype)
    steps = steps_lib.build(config, transform, jax.devices()[:1])
    state = steps.init_state()
    step_fn = steps.train_step
    batch = parallel.global_batch(steps.mesh, _batch())
    values = []
    for step in range(STEPS):
      state, metrics = step_fn(state, batch, jnp.float32(0.01), jnp.int32(step))
      values.append(float(metrics['loss']))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state['params']))
    out[dtype] = np.array(values)
  return out


def test_bfloat16_training_steps_follow_float32(losses):
  f32, b16 = losses['float32'], losses['bfloat16']
  assert np.all(np.isfinite(b16))
  assert f32[-1] < f32[0]  # the steps learn (the same batch every step)
  relative = np.abs(b16 - f32) / f32
  assert np.all(relative < LOSS_TOLERANCE), (f32, b16)
  assert b16[-1] < b16[0]
