"""The jax contender of bench/train_step.py: the project's step on one device, from whichever code
the worker was started on (this checkout, or a jax@REV tree), and the model's FLOPs.

This file always comes from the checkout that runs the benchmark; `alexnet_jax` comes from the
contender's code. So it builds the step with `steps.build` where the code has it, and falls back
on what older revisions offered (their `make_train_step`, with or without the input's float work
inside the step).
"""

from __future__ import annotations

import inspect
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def model_flops(cfg) -> float:
  """Multiply-adds x 2 of every conv and fc layer, forward + backward, per image."""
  try:
    from alexnet_jax.model import alexnet as model_lib
  except ImportError:  # jax@REV of a revision from before the package had subpackages
    from alexnet_jax import model as model_lib
  captured = {}
  size = cfg.input_size
  jax.eval_shape(lambda x: model_lib.create_model(cfg)(x, capture=captured),
                 jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  abstract = nnx.eval_shape(lambda: model_lib.create_model(cfg))
  total = 0.0
  for layer in abstract.conv_layers:
    c, kh, kw, cin, cout = getattr(abstract, layer.name).kernel.shape
    _, oh, ow, _ = captured[layer.name].shape
    forward = 2.0 * oh * ow * kh * kw * cin * cout * c
    total += forward * (2 if layer.name == 'conv1' else 3)  # conv1 needs no input gradient
  for layer in abstract.dense_layers:
    c, fan_in, out = getattr(abstract, layer.name).kernel.shape
    total += 3 * 2.0 * fan_in * out * c
  return total


def matmul_rate(n: int) -> float:
  """FLOP/s of jnp.dot on float32 [n, n] matrices."""
  a = jnp.ones((n, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  dot(a, a).block_until_ready()
  start = time.perf_counter()
  reps = 5
  for _ in range(reps):
    out = dot(a, a)
  out.block_until_ready()
  return 2.0 * n ** 3 * reps / (time.perf_counter() - start)


def make_config(config_arg, batch: int, overrides: list[str]):
  """The net's config on one device, with the contender's KEY=VALUE overrides."""
  from configs.alexnet import get_config
  config = get_config(config_arg)
  config.batch_size = batch
  config.mesh.model = 1
  for override in overrides:
    key, _, value = override.partition('=')
    node = config
    *parents, leaf = key.split('.')
    for part in parents:
      node = node[part]
    node[leaf] = type(node[leaf])(value) if not isinstance(node[leaf], bool) else (
        value == 'True')
  return config


def build_step(config, mean_image):
  """(placed state, its shardings, train step, whether the step takes uint8 crops, mesh) on one
  device: `steps.build` (no data: a stand-in transform of the same shapes and work), or for a
  jax@REV from before it, that revision's `make_train_step`."""
  try:
    from alexnet_jax.train import steps as steps_lib
  except ImportError:  # jax@REV of a revision from before steps.build
    steps_lib = None
  if steps_lib is not None:
    steps = steps_lib.build(config, devices=jax.devices()[:1])
    return steps.init_state(), steps.shardings, steps.train_step, True, steps.mesh
  from alexnet_jax import parallel
  try:
    from alexnet_jax.train import setup as train_setup
  except ImportError:  # before the package had subpackages
    from alexnet_jax import train as train_setup
    train_setup.init_state = train_setup._init_state  # pylint: disable=protected-access
  mesh = parallel.make_mesh(config.mesh, config.model, jax.devices()[:1])
  graphdef, state = train_setup.init_state(config)
  shardings = train_setup.state_shardings(mesh, state)
  state = jax.device_put(state, shardings)
  if 'transform' not in inspect.signature(train_setup.make_train_step).parameters:
    # Code from before the input's float work moved into the step: float inputs.
    step = train_setup.make_train_step(config, mesh, graphdef, shardings)
    return state, shardings, step, False, mesh
  try:
    from alexnet_jax.data import device_preprocess
  except ImportError:  # before the package had subpackages
    from alexnet_jax import device_preprocess
  transform = device_preprocess.input_transform(config.data, config.model.input_size,
                                                {'mean_image': mean_image})
  step = train_setup.make_train_step(config, mesh, graphdef, shardings, transform)
  return state, shardings, step, True, mesh


def share_params(state, shardings, config, load_from: str, save_to: str):
  """The state with the first jax worker's parameters (from the .npz `load_from`, if given),
  and its parameters written to `save_to` (if given) for the others; returns (state, the file
  written or None)."""
  try:
    from alexnet_jax.train import optim
  except ImportError:  # before the package had subpackages
    from alexnet_jax import optim
  if load_from:  # same tree: layer/kernel, layer/bias
    loaded = np.load(load_from)
    pure = nnx.to_pure_dict(state['params'])
    pure = {layer: {name: jnp.asarray(loaded[f'{layer}/{name}']) for name in d}
            for layer, d in pure.items()}
    nnx.replace_by_pure_dict(state['params'], pure)
    state['opt_state'] = optim.make_optimizer(config.optimizer).init(state['params'])
    state = jax.device_put(state, shardings)
  if not save_to:
    return state, None
  pure = nnx.to_pure_dict(state['params'])
  np.savez(save_to, **{f'{layer}/{name}': np.asarray(v) for layer, d in pure.items()
                       for name, v in d.items()})
  return state, save_to


def describe() -> str:
  import alexnet_jax
  return (f'jax {jax.__version__} from {os.path.dirname(alexnet_jax.__file__)}, '
          f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
