"""The LRN op against TensorFlow's (where installed), a float64 NumPy reference and numerical
gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu

from alexnet_jax.model.lrn import POWER_FORMS, effective_alpha, local_response_norm

SHAPES = [(2, 5, 5, 7), (3, 4, 4, 3), (1, 1, 1, 2), (2, 3, 3, 48), (4, 2, 6, 96)]


def numpy_lrn(a, size, k, alpha_eff, beta):
  """The paper's formula, written channel by channel in float64."""
  a = np.asarray(a, np.float64)
  out = np.empty_like(a)
  channels = a.shape[-1]
  half = size // 2
  for i in range(channels):
    lo, hi = max(0, i - half), min(channels - 1, i + half)
    s = np.sum(a[..., lo:hi + 1] ** 2, axis=-1)
    out[..., i] = a[..., i] / (k + alpha_eff * s) ** beta
  return out


def _tf_forward_and_grad(x, cotangent, size, k, alpha_eff, beta):
  # Only these comparisons need TensorFlow; every other test here runs without it.
  tf = pytest.importorskip('tensorflow')
  xt = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(xt)
    y = tf.nn.local_response_normalization(xt, depth_radius=size // 2, bias=k, alpha=alpha_eff,
                                           beta=beta)
    loss = tf.reduce_sum(y * cotangent)
  return y.numpy(), tape.gradient(loss, xt).numpy()


def _rel_err(a, b):
  return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('convention', ['code', 'paper'])
@pytest.mark.parametrize('power', POWER_FORMS)
def test_matches_tensorflow_forward_and_gradient(shape, convention, power):
  rng = np.random.default_rng(sum(shape))
  # Values of the size ReLU activations take in the net, so the denominator really matters.
  x = (rng.standard_normal(shape) * 40).astype(np.float32)
  cot = rng.standard_normal(shape).astype(np.float32)
  size, k, alpha, beta = 5, 2.0, 1e-4, 0.75
  y_tf, g_tf = _tf_forward_and_grad(x, cot, size, k, effective_alpha(alpha, size, convention),
                                    beta)

  def f(v):
    return local_response_norm(v, size=size, k=k, alpha=alpha, beta=beta,
                               alpha_convention=convention, power=power)

  y, vjp = jax.vjp(f, jnp.asarray(x))
  (g,) = vjp(jnp.asarray(cot))
  assert _rel_err(np.asarray(y), y_tf) < 1e-5
  assert _rel_err(np.asarray(g), g_tf) < 1e-5


def test_conventions_differ_by_a_factor_of_size():
  # The paper-text reading is 5x stronger: same output as 'code' with alpha multiplied by 5.
  x = np.random.default_rng(0).standard_normal((2, 3, 3, 16)).astype(np.float32) * 50
  paper = local_response_norm(x, alpha=1e-4, alpha_convention='paper')
  code = local_response_norm(x, alpha=5e-4, alpha_convention='code')
  np.testing.assert_allclose(paper, code, rtol=1e-6)
  assert not np.allclose(paper, local_response_norm(x, alpha=1e-4, alpha_convention='code'))


@pytest.mark.parametrize('size,k,alpha,beta', [(5, 2.0, 1e-4, 0.75), (3, 1.0, 1e-2, 0.5),
                                               (7, 0.5, 1e-3, 1.2)])
@pytest.mark.parametrize('power', POWER_FORMS)
@pytest.mark.parametrize('channels', [10, 32])  # 'vector' flattens the array unless 16 | C
def test_matches_float64_numpy_reference(size, k, alpha, beta, power, channels):
  x = np.random.default_rng(size).standard_normal((3, 4, 4, channels)) * 20
  expected = numpy_lrn(x, size, k, alpha / size, beta)
  got = local_response_norm(jnp.asarray(x, jnp.float32), size=size, k=k, alpha=alpha, beta=beta,
                            power=power)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('power', POWER_FORMS)
def test_gradient_matches_float64_finite_differences(power):
  rng = np.random.default_rng(3)
  x = rng.standard_normal((1, 2, 2, 6)) * 20
  cot = rng.standard_normal(x.shape)
  size, k, alpha, beta = 5, 2.0, 1e-3, 0.75
  numeric = np.zeros_like(x)
  eps = 1e-5
  for idx in np.ndindex(x.shape):
    up, down = x.copy(), x.copy()
    up[idx] += eps
    down[idx] -= eps
    numeric[idx] = np.sum((numpy_lrn(up, size, k, alpha / size, beta)
                           - numpy_lrn(down, size, k, alpha / size, beta)) * cot) / (2 * eps)
  grad = jax.grad(lambda v: jnp.sum(local_response_norm(v, size=size, k=k, alpha=alpha,
                                                        beta=beta, power=power) * cot))(
                                                            jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(grad), numeric, rtol=1e-4, atol=1e-6)


def test_check_grads():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 3, 3, 8)) * 10, jnp.float32)
  jtu.check_grads(lambda v: local_response_norm(v, alpha=1e-2), (x,), order=1, modes=['rev'],
                  atol=1e-2, rtol=1e-2)


def test_unknown_power_form_fails_with_the_choices():
  with pytest.raises(ValueError, match='vector'):
    local_response_norm(jnp.ones((1, 1, 1, 4)), power='fast')


def test_bfloat16_in_bfloat16_out():
  x = np.random.default_rng(2).standard_normal((2, 4, 4, 16)).astype(np.float32) * 30
  y32 = local_response_norm(jnp.asarray(x))
  y16 = local_response_norm(jnp.asarray(x, jnp.bfloat16))
  g16 = jax.grad(lambda v: jnp.sum(local_response_norm(v)).astype(jnp.float32))(
      jnp.asarray(x, jnp.bfloat16))
  assert y16.dtype == jnp.bfloat16 and g16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y16, np.float32), np.asarray(y32), rtol=2e-2, atol=1e-2)


def test_jit_vmap_grad_agree_with_eager():
  x = jnp.asarray(np.random.default_rng(4).standard_normal((3, 2, 4, 4, 9)) * 10, jnp.float32)
  eager = jnp.stack([local_response_norm(x[i]) for i in range(3)])
  np.testing.assert_allclose(jax.jit(jax.vmap(local_response_norm))(x), eager, rtol=1e-6)

  def loss(v):
    return jnp.sum(jnp.sin(local_response_norm(v)))

  g_jit = jax.jit(jax.grad(loss))(x)
  g_vmap = jax.vmap(jax.grad(loss))(x)
  np.testing.assert_allclose(g_jit, g_vmap, rtol=1e-5, atol=1e-7)


def test_backward_saves_only_input_and_scale():
  x = jnp.ones((2, 3, 3, 8))
  _, residuals = jax.vjp(local_response_norm, x)
  leaves = [leaf for leaf in jax.tree.leaves(residuals) if hasattr(leaf, 'shape')
            and leaf.shape == x.shape]
  assert len(leaves) == 2
