"""The train and eval steps lower for CUDA and TPU, from this CPU, with the accelerators' kernels.

`jax.export` traces and lowers the jitted steps the loop runs (train/steps.py's `build`) for
platforms this machine does not have, from abstract shapes carrying the run's shardings: the
paper's full-shape net on one device, and on the 4 simulated devices as a 2 x 2 mesh (its two
columns on two devices, the batch split over the two pairs), in float32 and bfloat16. Nothing
is compiled or run. The StableHLO must hold what the platform's kernels and the layout promise:
the grouped convolution of the accelerators' kernels (one device), the all-gathers where the
split columns exchange activations and their transposes, the sums over the data-parallel pairs,
bfloat16 convolutions under model.dtype=bfloat16."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from alexnet_jax import parallel
from alexnet_jax.data import device_preprocess
from alexnet_jax.train import steps as steps_lib
from configs.alexnet import get_config

BATCH = 8
VIEWS = 2
PLATFORMS = {'cuda': 'gpu', 'tpu': 'tpu'}  # export platform -> model.platform
# Where the split columns all-gather in the forward pass: the inputs of conv3, fc6, fc7, fc8 and
# the logits.
FORWARD_GATHERS = 5


def _config(platform: str, dtype: str, mesh_shape: tuple[int, int]):
  config = get_config()  # the paper's net at its full shape: lowering needs no memory
  config.model.platform = platform
  config.model.dtype = dtype
  config.mesh.data, config.mesh.model = mesh_shape
  config.batch_size = BATCH
  return config


def _transform(config):
  scales, vectors = device_preprocess.pca_constants('code', None)
  size = config.model.input_size
  return device_preprocess.InputTransform(
      mean=np.full((size, size, 3), 120.0, np.float32), input_scale=1.0, pca_scales=scales,
      pca_vectors=vectors, pca_std=0.1)


def _steps(config):
  """(mesh, abstract train state with shardings, train_step, eval_step), from `steps.build`,
  the loop's own builder, without data or parameters."""
  devices = jax.devices()[:config.mesh.model * config.mesh.data]
  steps = steps_lib.build(config, _transform(config), devices)
  return steps.mesh, steps.abstract_state, steps.train_step, steps.eval_step


def _batch_arg(mesh, shape, dtype):
  return jax.ShapeDtypeStruct(shape, dtype, sharding=parallel.batch_sharding(mesh))


def _export(export_platform, step, *args):
  exported = jax.export.export(step, platforms=[export_platform])(*args)
  assert exported.platforms == (export_platform,)
  return exported, exported.mlir_module()


def _convolutions(text):
  return re.findall(r'stablehlo.convolution.*', text)


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
@pytest.mark.parametrize('mesh_shape', [(1, 1), (2, 2)], ids=['one-device', 'split-columns'])
@pytest.mark.parametrize('export_platform', list(PLATFORMS))
def test_train_and_eval_steps_lower_for_accelerators(export_platform, mesh_shape, dtype):
  """One device, or the columns split over 'model' and the batch over 'data' (4 devices)."""
  data, model_devices = mesh_shape
  config = _config(PLATFORMS[export_platform], dtype, mesh_shape)
  mesh, state, train_step, eval_step = _steps(config)
  size = config.model.input_size
  batch = {'image': _batch_arg(mesh, (BATCH, size, size, 3), jnp.uint8),
           'label': _batch_arg(mesh, (BATCH,), jnp.int32),
           'weight': _batch_arg(mesh, (BATCH,), jnp.float32)}
  train, train_text = _export(export_platform, train_step, state, batch,
                              jax.ShapeDtypeStruct((), jnp.float32),
                              jax.ShapeDtypeStruct((), jnp.int32))
  evaluation, eval_text = _export(
      export_platform, eval_step, state['params'],
      _batch_arg(mesh, (BATCH, VIEWS, size, size, 3), jnp.uint8),
      _batch_arg(mesh, (BATCH,), jnp.int32), _batch_arg(mesh, (BATCH,), jnp.float32))
  for exported in (train, evaluation):
    assert exported.nr_devices == data * model_devices
  # The parameters keep their layout: each column's half on its own device.
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
  fc6 = train.in_shardings_jax(mesh)[paths.index("['params']['fc6']['kernel'].value")]
  assert fc6.spec == (P('model') if model_devices == 2 else P()), fc6

  compute = 'bf16' if dtype == 'bfloat16' else 'f32'
  for text in (train_text, eval_text):
    convolutions = _convolutions(text)
    assert convolutions and all(f'x{compute}>' in c for c in convolutions)
    grouped = [c for c in convolutions if 'feature_group_count = 2' in c]
    # One device: conv2, conv4 and conv5 as grouped convolutions (their backward passes too);
    # split columns: each device convolves its own column, nothing to group.
    assert bool(grouped) == (model_devices == 1)
    assert ('all_gather' in text) == (model_devices == 2)
  if model_devices == 2:
    assert eval_text.count('stablehlo.all_gather') == FORWARD_GATHERS
    assert train_text.count('stablehlo.all_gather') >= FORWARD_GATHERS
    assert 'reduce_scatter' in train_text  # the gathers' transposes, backward
  # The loss's sums and the gradients are summed over 'data'.
  assert ('all_reduce' in train_text) == (data > 1)


def test_cpu_kernels_do_not_group_the_convolutions():
  """The grouped convolutions above come from model.platform, not from the export target."""
  config = _config('cpu', 'float32', (1, 1))
  mesh, state, _, eval_step = _steps(config)
  size = config.model.input_size
  _, text = _export('cuda', eval_step, state['params'],
                    _batch_arg(mesh, (BATCH, VIEWS, size, size, 3), jnp.uint8),
                    _batch_arg(mesh, (BATCH,), jnp.int32), _batch_arg(mesh, (BATCH,), jnp.float32))
  assert _convolutions(text)
  assert 'feature_group_count = 2' not in text
