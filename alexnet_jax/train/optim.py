"""The paper's optimizer and learning-rate schedules, built from optax pieces.

The paper's update (section 5) puts the learning rate INSIDE the momentum buffer:

    v <- 0.9 v - 0.0005 * lr * w - lr * grad
    w <- w + v

which is `add_decayed_weights -> scale(-lr) -> trace(0.9)`. optax's `sgd` instead accumulates
raw gradients and multiplies by the current lr afterwards, so the two differ right after a
learning-rate drop (the paper's buffer still carries the old, larger steps). Both are offered.

The learning rate is an injected hyperparameter (`opt_state.hyperparams['learning_rate']`):
the loop sets it every step from the schedule, so the plateau schedule (which depends on
validation error, not on the step) fits the same mechanism as the step and cosine schedules.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from alexnet_jax import config_schema
from alexnet_jax.train import durations


def _is_bias(path) -> bool:
  """Whether a leaf's path names a bias: `{'bias': x}`, or NNX's `bias` Param whose leaf sits
  one level deeper (`.../bias/value`)."""
  names = [getattr(k, 'key', getattr(k, 'name', None)) for k in path]
  return 'bias' in names


def bias_mask(params, biases: bool):
  """True on biases (biases=True) or on everything else (biases=False)."""
  return jax.tree_util.tree_map_with_path(lambda p, _: _is_bias(p) == biases, params)


def _scale_biases(multiplier: float) -> optax.GradientTransformation:
  if multiplier == 1.0:
    return optax.identity()
  return optax.masked(optax.scale(multiplier), lambda params: bias_mask(params, True))


def make_optimizer(opt_config) -> optax.GradientTransformation:
  """The optimizer of `config.optimizer`, learning rate injected (set it every step)."""
  config_schema.check(opt_config, 'optimizer')
  kind = opt_config.name
  decay_mask = None if opt_config.bias_weight_decay else (
      lambda params: bias_mask(params, False))

  def build(learning_rate):
    decay = optax.add_decayed_weights(opt_config.weight_decay, mask=decay_mask)
    biases = _scale_biases(opt_config.bias_lr_multiplier)
    if kind == 'paper':
      return optax.chain(decay, optax.scale_by_learning_rate(learning_rate), biases,
                         optax.trace(decay=opt_config.momentum))
    return optax.chain(decay, optax.trace(decay=opt_config.momentum), biases,
                       optax.scale_by_learning_rate(learning_rate))

  return optax.inject_hyperparams(build)(learning_rate=opt_config.learning_rate)


def set_learning_rate(opt_state, learning_rate):
  """A copy of an injected-hyperparameter state with its learning rate replaced."""
  hyperparams = dict(opt_state.hyperparams)
  hyperparams['learning_rate'] = jnp.asarray(learning_rate,
                                             hyperparams['learning_rate'].dtype)
  return opt_state._replace(hyperparams=hyperparams)


# ------------------------------------------------------------------------------ schedules
@dataclasses.dataclass
class PlateauState:
  """What the plateau rule remembers; saved in checkpoints."""
  best_error: float = math.inf
  bad_evals: int = 0
  reductions: int = 0

  def to_dict(self):
    return dataclasses.asdict(self)


class Schedule:
  """Learning rate at a step; `observe` feeds validation errors to the plateau rule.

  Durations in the config are in epochs or steps (durations.py converts them with
  `steps_per_epoch`).
  """

  def __init__(self, sched_config, base_lr: float, steps_per_epoch: int, total_steps: int,
               state: PlateauState | None = None):
    config_schema.check(sched_config, 'schedule')
    self.cfg = sched_config
    self.base_lr = base_lr
    self.steps_per_epoch = steps_per_epoch
    self.total_steps = total_steps
    self.state = state or PlateauState()
    self.warmup_steps = durations.steps(sched_config, 'warmup', steps_per_epoch)
    self.boundaries = durations.steps(sched_config, 'boundaries', steps_per_epoch)

  def __call__(self, step: int) -> float:
    cfg = self.cfg
    if cfg.name == 'plateau':
      lr = self.base_lr * cfg.factor ** self.state.reductions
    elif cfg.name == 'steps':
      lr = self.base_lr * cfg.factor ** sum(step >= b for b in self.boundaries)
    elif cfg.name == 'cosine':
      span = max(1, self.total_steps - self.warmup_steps)
      t = min(1.0, max(0, step - self.warmup_steps) / span)
      lr = self.base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
    else:
      lr = self.base_lr
    if self.warmup_steps and step < self.warmup_steps:
      lr *= (step + 1) / self.warmup_steps
    return lr

  def observe(self, val_error: float) -> bool:
    """Feeds one validation error; True when the plateau rule just divided the rate."""
    if self.cfg.name != 'plateau':
      return False
    s = self.state
    if val_error < s.best_error - self.cfg.min_delta:
      s.best_error, s.bad_evals = val_error, 0
      return False
    s.bad_evals += 1
    if s.bad_evals >= self.cfg.patience and s.reductions < self.cfg.max_reductions:
      s.reductions += 1
      s.bad_evals = 0
      return True
    return False
