"""The run's jitted steps and the shapes they take, built from the config alone.

`build(config)` is the one way to get the train and eval steps: the loop, --mode=eval, the
research tools, the benchmarks and the tests all use it. It needs no data: the dataset's input
transform (mean image, PCA colour noise, input scale) may be passed in, and without it a stand-in
of the same shapes is used, so a compile or a benchmark can build the real step anywhere. Nothing
here runs or compiles until a step is called (or lowered with `batch_spec`'s shapes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from alexnet_jax import parallel
from alexnet_jax.data import device_preprocess
from alexnet_jax.model import alexnet as model_lib
from alexnet_jax.train import evaluate as evaluate_lib
from alexnet_jax.train import optim

# The stand-in's mean (0-255 units): mid-grey rather than zero, which XLA would fold away, so a
# step built without data does the work of the real one.
STAND_IN_MEAN = 128.0


@dataclasses.dataclass(frozen=True)
class Steps:
  """A run's steps on its mesh, and the layout of what they take.

  train_step: jit(state, batch, learning_rate, step) -> (state, metrics), the state donated;
    batch = {'image': uint8 [B, S, S, 3], 'label': int32 [B], 'weight': float32 [B]} (on the
    raw squares' path 'image' is uint8 [B, R, R, 3] and 'crop' int32 [B, 3]: `batch_shapes`).
  eval_step: jit(params, uint8 images [B, V, S, S, 3], labels, mask) -> summed correct counts.
  abstract_state: the train state as ShapeDtypeStructs carrying their NamedShardings (what a
    checkpoint restores into); shardings: the same NamedShardings alone.
  logits_fn: (params, float inputs [N, S, S, 3]) -> logits, split over the mesh as the steps are.
  """
  config: object
  mesh: jax.sharding.Mesh
  graphdef: object
  transform: device_preprocess.InputTransform
  abstract_state: dict
  shardings: dict
  logits_fn: Callable
  train_step: Callable
  eval_step: Callable

  def init_state(self) -> dict:
    """A new train state (seeded by `config.seed`), placed on the mesh."""
    _, state = _new_state(self.config)
    return jax.device_put(state, self.shardings)

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """The shapes, dtypes and shardings of a global training batch of `batch_size`."""
    return self._spec(batch_shapes(self.config, batch_size))

  def eval_batch_spec(self, batch_size: int, views: int) -> dict[str, jax.ShapeDtypeStruct]:
    """The same for an evaluation batch of `views` crops per example."""
    size = self.config.model.input_size
    return self._spec({'image': ((batch_size, views, size, size, 3), jnp.uint8),
                       'label': ((batch_size,), jnp.int32), 'mask': ((batch_size,), jnp.bool_)})

  def _spec(self, shapes: dict) -> dict[str, jax.ShapeDtypeStruct]:
    sharding = parallel.batch_sharding(self.mesh)
    return {name: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
            for name, (shape, dtype) in shapes.items()}


def crops_on_device(config) -> bool:
  """Whether the train step cuts the crops (data.squares_format='raw': the host sends whole
  squares and each example's crop draws) or takes them cut (the JPEG squares' path)."""
  return config.data.get('squares_format', 'jpeg') == 'raw'


def batch_shapes(config, batch_size: int) -> dict[str, tuple[tuple[int, ...], object]]:
  """{name: (shape, dtype)} of a global training batch: uint8 crops, labels, loss weights; on
  the raw squares' path whole squares and int32 draws (offset_y, offset_x, flip) instead."""
  size = config.model.input_size
  shapes = {'image': ((batch_size, size, size, 3), jnp.uint8),
            'label': ((batch_size,), jnp.int32), 'weight': ((batch_size,), jnp.float32)}
  if crops_on_device(config):
    r = int(config.data.resize_size)
    shapes.update(image=((batch_size, r, r, 3), jnp.uint8), crop=((batch_size, 3), jnp.int32))
  return shapes


def build(config, transform: device_preprocess.InputTransform | None = None,
          devices=None) -> Steps:
  """The steps of `config` on the mesh of `config.mesh` over `devices` (default: all).

  `transform` turns the uint8 crops into the net's input (the dataset's, from
  `setup.plan(config).info.transform`); None: `stand_in_transform(config)`.
  """
  mesh = parallel.make_mesh(config.mesh, config.model, devices)
  transform = stand_in_transform(config) if transform is None else transform
  graphdef, abstract = _abstract_state(config)
  shardings = {'params': parallel.param_sharding(mesh, abstract['params']),
               'opt_state': parallel.param_sharding(mesh, abstract['opt_state']),
               'rng': parallel.replicated(mesh)}
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  logits_fn = parallel.make_logits_fn(graphdef, mesh, config.model)
  return Steps(config=config, mesh=mesh, graphdef=graphdef, transform=transform,
               abstract_state=abstract, shardings=shardings, logits_fn=logits_fn,
               train_step=_train_step(config, mesh, graphdef, shardings, transform),
               eval_step=evaluate_lib.make_eval_step(logits_fn, transform))


def stand_in_transform(config) -> device_preprocess.InputTransform:
  """An input transform of the right shapes without the dataset's statistics: a mid-grey mean
  (image or channels, as `data.mean` says), the original code's PCA for `pca_noise='stats'`."""
  size = config.model.input_size
  stats = {'mean_image': np.full((size, size, 3), STAND_IN_MEAN, np.float32),
           'channel_mean': np.full((3,), STAND_IN_MEAN, np.float32),
           'pca_std': device_preprocess.CODE_PCA_STD,
           'pca_vectors': device_preprocess.CODE_PCA_VECTORS}
  return device_preprocess.input_transform(config.data, size, stats)


def _new_state(config):
  """(graphdef, state): a new net of `config.model` (seeded by `config.seed`), its optimizer
  state and the dropout RNG, on the host."""
  model = model_lib.create_model(config.model, seed=config.seed)
  graphdef, params = nnx.split(model, nnx.Param)
  tx = optim.make_optimizer(config.optimizer)
  return graphdef, {'params': params, 'opt_state': tx.init(params),
                    'rng': jax.random.key_data(jax.random.key(config.seed + 1))}


def _abstract_state(config):
  """(graphdef, the train state's shapes and dtypes), computing nothing."""
  box = {}

  def init():
    box['graphdef'], state = _new_state(config)
    return state

  abstract = jax.eval_shape(init)
  return box['graphdef'], abstract


def _train_step(config, mesh, graphdef, shardings, transform):
  """jit(state, batch, learning_rate, step) -> (state, metrics); the state is donated. The
  batch's uint8 crops become the net's input inside (colour noise keyed by (config.seed, step,
  example))."""
  tx = optim.make_optimizer(config.optimizer)
  loss_fn = parallel.make_loss_fn(graphdef, mesh, config.model)

  def step_fn(state, batch, learning_rate, step):
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state['rng']), step)
    opt_state = optim.set_learning_rate(state['opt_state'], learning_rate)
    images = batch['image']
    if 'crop' in batch:  # the raw squares' path: cut the crops here
      images = device_preprocess.crop_squares(images, batch['crop'], config.model.input_size)
    images = device_preprocess.train_inputs(images, transform, config.seed, step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['params'], dict(batch, image=images), dropout_key, True)
    updates, opt_state = tx.update(grads, opt_state, state['params'])
    params = optax.apply_updates(state['params'], updates)
    metrics = {'loss': loss, **aux}
    return {'params': params, 'opt_state': opt_state, 'rng': state['rng']}, metrics

  # 'weight' is 0 for the placeholders of undecodable files (the loss ignores them).
  batch_sharding = parallel.batch_sharding(mesh)
  batch_shardings = {name: batch_sharding for name in batch_shapes(config, 1)}
  return jax.jit(step_fn, in_shardings=(shardings, batch_shardings, None, None),
                 out_shardings=(shardings, None), donate_argnums=(0,))
