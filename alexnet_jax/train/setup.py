"""A run's setup, decided before any compilation: the mesh, the dataset's size, the abstract train
state with its shardings, and the jitted train step.

Everything here is needed by training and by the tools that restore a trained net; the loop
(loop.py) and the tools build on it, and it imports neither.
"""

from __future__ import annotations

import dataclasses

import jax
import optax
from flax import nnx

from alexnet_jax import parallel
from alexnet_jax.data import device_preprocess
from alexnet_jax.model import alexnet as model_lib
from alexnet_jax.train import durations
from alexnet_jax.train import optim


class TrainingError(RuntimeError):
  pass


@dataclasses.dataclass
class Setup:
  """Everything a run needs that is decided before any compilation."""
  mesh: jax.sharding.Mesh
  info: object
  steps_per_epoch: int
  total_steps: int
  graphdef: object
  abstract_state: dict
  shardings: dict


def plan(config) -> Setup:
  """Checks the layout and the dataset and sizes the run; fails before compiling anything.
  Makes no data: the dataset must be there (the training command makes what is quick to make
  before it plans)."""
  from alexnet_jax.data import pipeline
  mesh = parallel.make_mesh(config.mesh, config.model)
  parallel.check_batch(mesh, config.batch_size)
  # `info.dataset` is what the iterators read; `info.transform` what the device does to the
  # uint8 crops.
  info = pipeline.dataset_info(config.data, image_size=config.model.input_size)
  if info.num_classes > config.model.num_classes:
    raise TrainingError(
        f'The dataset has {info.num_classes} classes but model.num_classes is '
        f'{config.model.num_classes}; set --config.model.num_classes={info.num_classes}.')
  steps_per_epoch = max(1, info.num_train // config.batch_size)
  total = durations.steps(config, 'num', steps_per_epoch)
  graphdef, abstract = abstract_state(config)
  shardings = state_shardings(mesh, abstract)
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  return Setup(mesh, info, steps_per_epoch, total, graphdef, abstract, shardings)


def state_shardings(mesh, state) -> dict:
  """Where the train state lives: parameters and optimizer state by column, the RNG everywhere."""
  return {'params': parallel.param_sharding(mesh, state['params']),
          'opt_state': parallel.param_sharding(mesh, state['opt_state']),
          'rng': parallel.replicated(mesh)}


def init_state(config):
  """(graphdef, state): a new net of `config.model` (seeded by `config.seed`), its optimizer
  state and the dropout RNG, on the host."""
  model = model_lib.create_model(config.model, seed=config.seed)
  graphdef, params = nnx.split(model, nnx.Param)
  tx = optim.make_optimizer(config.optimizer)
  return graphdef, {'params': params, 'opt_state': tx.init(params),
                    'rng': jax.random.key_data(jax.random.key(config.seed + 1))}


def abstract_state(config):
  """(graphdef, the train state's shapes and dtypes), computing nothing."""
  box = {}

  def init():
    graphdef, state = init_state(config)
    box['graphdef'] = graphdef
    return state

  abstract = jax.eval_shape(init)
  return box['graphdef'], abstract


def make_train_step(config, mesh, graphdef, shardings,
                    transform: device_preprocess.InputTransform):
  """jit(state, batch, learning_rate, step) -> (state, metrics); the state is donated.

  Needs no data: `shardings` is `state_shardings(mesh, state)`; `transform` turns the batch's
  uint8 crops into the net's input (colour noise keyed by (config.seed, step, example)).
  """
  tx = optim.make_optimizer(config.optimizer)
  loss_fn = parallel.make_loss_fn(graphdef, mesh, config.model)
  batch_sharding = parallel.batch_sharding(mesh)
  s = shardings

  def step_fn(state, batch, learning_rate, step):
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state['rng']), step)
    opt_state = optim.set_learning_rate(state['opt_state'], learning_rate)
    images = device_preprocess.train_inputs(batch['image'], transform, config.seed, step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['params'], dict(batch, image=images), dropout_key, True)
    updates, opt_state = tx.update(grads, opt_state, state['params'])
    params = optax.apply_updates(state['params'], updates)
    metrics = {'loss': loss, **aux}
    return {'params': params, 'opt_state': opt_state, 'rng': state['rng']}, metrics

  # 'weight' is 0 for the placeholders of undecodable files (the loss ignores them).
  batch_shardings = {'image': batch_sharding, 'label': batch_sharding, 'weight': batch_sharding}
  return jax.jit(step_fn, in_shardings=(s, batch_shardings, None, None),
                 out_shardings=(s, None), donate_argnums=(0,))
