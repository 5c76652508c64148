"""The paper's update rule against a hand-written NumPy version, and the schedules."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from alexnet_jax.train import optim


def _opt_config(**overrides):
  c = ml_collections.ConfigDict(dict(name='paper', learning_rate=0.01, momentum=0.9,
                                     weight_decay=5e-4, bias_lr_multiplier=1.0,
                                     bias_weight_decay=True))
  c.update(overrides)
  return c


def _run(opt_config, lrs, params, grads_fn):
  tx = optim.make_optimizer(opt_config)
  state = tx.init(params)
  for step, lr in enumerate(lrs):
    state = optim.set_learning_rate(state, lr)
    updates, state = tx.update(grads_fn(params, step), state, params)
    params = optax.apply_updates(params, updates)
  return params


def _grads(params, step):
  # A deterministic, parameter-dependent "gradient": 2 * w * (step + 1) + 0.1.
  return jax.tree.map(lambda w: 2.0 * w * (step + 1) / 10 + 0.1, params)


LRS = [0.01] * 4 + [0.001] * 4  # a drop in the middle, as the schedule makes


def _numpy_paper(params, lrs, bias_mult=1.0, bias_decay=True):
  """v <- 0.9 v - 0.0005 lr w - lr g;  w <- w + v   (PAPER.md), per leaf."""
  out = {}
  for name, w in params.items():
    w = np.array(w, np.float64)
    v = np.zeros_like(w)
    bias = name == 'bias'
    for step, lr in enumerate(lrs):
      g = 2.0 * w * (step + 1) / 10 + 0.1
      mult = bias_mult if bias else 1.0
      wd = 0.0 if (bias and not bias_decay) else 5e-4
      v = 0.9 * v - wd * lr * mult * w - lr * mult * g
      w = w + v
    out[name] = w
  return out


def test_paper_rule_matches_numpy_over_a_learning_rate_drop():
  params = {'kernel': jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)), jnp.float32),
            'bias': jnp.asarray(np.random.default_rng(1).standard_normal((4,)), jnp.float32)}
  got = _run(_opt_config(), LRS, params, _grads)
  want = _numpy_paper(params, LRS)
  for name in params:
    np.testing.assert_allclose(np.asarray(got[name]), want[name], rtol=1e-5, atol=1e-7)


def test_original_code_bias_options():
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.full((2,), 0.5)}
  got = _run(_opt_config(bias_lr_multiplier=2.0, bias_weight_decay=False), LRS, params, _grads)
  want = _numpy_paper(params, LRS, bias_mult=2.0, bias_decay=False)
  for name in params:
    np.testing.assert_allclose(np.asarray(got[name]), want[name], rtol=1e-5, atol=1e-7)


def test_optax_sgd_differs_after_a_drop():
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.full((2,), 0.5)}
  paper = _run(_opt_config(), LRS, params, _grads)
  standard = _run(_opt_config(name='optax_sgd'), LRS, params, _grads)
  # Before any drop the two rules are the same ...
  same_paper = _run(_opt_config(), LRS[:4], params, _grads)
  same_standard = _run(_opt_config(name='optax_sgd'), LRS[:4], params, _grads)
  np.testing.assert_allclose(same_paper['kernel'], same_standard['kernel'], rtol=1e-6)
  # ... after it, optax's buffer is rescaled by the new rate, the paper's is not.
  assert not np.allclose(paper['kernel'], standard['kernel'], rtol=1e-4)


def _sched(**overrides):
  c = ml_collections.ConfigDict(dict(name='steps', factor=0.1, boundaries_epochs=(25, 51, 79),
                                     boundaries_steps=(), warmup_epochs=0.0, warmup_steps=0,
                                     patience=2, max_reductions=3, min_delta=0.0))
  c.update(overrides)
  return c


def test_step_schedule_in_epochs():
  s = optim.Schedule(_sched(), 0.01, steps_per_epoch=10, total_steps=910)
  assert s(0) == 0.01 and s(249) == 0.01
  assert s(250) == pytest.approx(0.001) and s(510) == pytest.approx(1e-4)
  assert s(790) == pytest.approx(1e-5)


def test_plateau_divides_at_most_three_times():
  s = optim.Schedule(_sched(name='plateau'), 0.01, steps_per_epoch=10, total_steps=1000)
  errors = [0.9, 0.8, 0.8, 0.8, 0.7, 0.75, 0.72] + [0.7] * 20
  drops = [s.observe(e) for e in errors]
  assert drops[:4] == [False, False, False, True]  # two evaluations without improvement
  assert sum(drops) == 3
  assert s(0) == pytest.approx(1e-5)


def test_cosine_and_warmup():
  s = optim.Schedule(_sched(name='cosine', warmup_steps=10), 0.1, steps_per_epoch=10,
                     total_steps=110)
  assert s(0) == pytest.approx(0.01) and s(9) == pytest.approx(0.1)
  assert s(60) == pytest.approx(0.05) and s(110) == pytest.approx(0.0, abs=1e-12)


def test_bias_options_reach_the_models_biases():
  """On the real NNX parameter tree (biases sit at .../bias/value), not only on plain dicts."""
  from flax import nnx

  from alexnet_jax.model import alexnet as model_lib
  from configs.alexnet import get_config
  cfg = get_config('quickstart').model
  cfg.width, cfg.input_size = 0.125, 67
  _, params = nnx.split(model_lib.create_model(cfg), nnx.Param)
  mask = optim.bias_mask(params, True)
  flat = {'/'.join(str(getattr(k, 'key', k)) for k in path): m
          for path, m in jax.tree_util.tree_flatten_with_path(mask)[0]}
  assert sum(flat.values()) == 8 and len(flat) == 16  # 8 layers: one bias, one kernel each
  assert all(('bias' in name) == m for name, m in flat.items())
  ones = jax.tree.map(jnp.ones_like, params)
  opt = _opt_config(bias_lr_multiplier=2.0, bias_weight_decay=False)
  tx = optim.make_optimizer(opt)
  updates, _ = tx.update(ones, tx.init(params), params)
  # First step: v = -lr * mult * (g + wd * w); biases: no decay and twice the rate.
  np.testing.assert_allclose(updates['conv1']['bias'][...], -0.02, rtol=1e-6)
  w = params['conv1']['kernel'][...]
  np.testing.assert_allclose(updates['conv1']['kernel'][...], -0.01 * (1 + 5e-4 * w), rtol=1e-5)
