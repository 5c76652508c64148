"""Max-pooling with its backward written out, against XLA's reduce-window and its autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.model import pooling


def _xla_pool(x, window, stride):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, stride, stride, 1), 'VALID')


@pytest.mark.parametrize('shape,window', [((2, 55, 55, 3), 3), ((2, 54, 53, 2), 3),
                                          ((1, 13, 13, 4), 3), ((2, 27, 27, 2), 2),
                                          ((1, 7, 9, 2), 3), ((1, 6, 6, 1), 2)])
def test_value_and_gradient_match_xla(shape, window):
  rng = np.random.default_rng(sum(shape))
  # Rounded ReLU outputs: many windows hold their maximum twice (or are all zero), so the
  # gradient must go to the first maximum of each window, as XLA (and PyTorch) route it.
  x = jnp.asarray(np.maximum(rng.standard_normal(shape), 0).round(1), jnp.float32)
  y, vjp = jax.vjp(lambda v: pooling.max_pool(v, window, 2), x)
  y_ref, vjp_ref = jax.vjp(lambda v: _xla_pool(v, window, 2), x)
  np.testing.assert_array_equal(y, y_ref)
  g = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  # Overlapping windows add up in another order: equal up to float rounding.
  np.testing.assert_allclose(vjp(g)[0], vjp_ref(g)[0], rtol=1e-6, atol=1e-6)


def test_ties_go_to_the_first_maximum_only():
  x = jnp.ones((1, 3, 3, 1))
  (g,) = jax.vjp(lambda v: pooling.max_pool(v, 3, 2), x)[1](jnp.ones((1, 1, 1, 1)))
  expected = np.zeros((1, 3, 3, 1))
  expected[0, 0, 0, 0] = 1.0
  np.testing.assert_array_equal(g, expected)


def test_bfloat16_and_jit():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 9, 9, 4)), jnp.bfloat16)
  g = jax.jit(jax.grad(lambda v: jnp.sum(pooling.max_pool(v, 3, 2)).astype(jnp.float32)))(x)
  ref = jax.grad(lambda v: jnp.sum(_xla_pool(v, 3, 2)).astype(jnp.float32))(x)
  assert g.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(ref, np.float32))
