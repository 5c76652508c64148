"""Local response normalization (Krizhevsky et al. 2012, section 3.3) with an analytic gradient.

    b_i = a_i / (k + alpha' * sum_{j in window(i)} a_j^2) ** beta

over the LAST axis (channels of NHWC arrays), the window of `size` channels centred on i and
clipped at the edges. Two conventions for alpha' exist (see the README):

  'code'  : alpha' = alpha / size, as the original cuda-convnet code (and Caffe, PyTorch) runs it.
            The paper's net is then k=2, size=5, alpha=1e-4 -> alpha' = 2e-5.
  'paper' : alpha' = alpha, as the paper's formula is written (5x stronger at size 5).
            This is also TensorFlow's `tf.nn.local_response_normalization` convention.

The backward pass is written out instead of left to autodiff: autodiff of the formula keeps the
squares, the window sums and the power as residuals; here only the input and the scale
p = d^-beta (d = k + alpha' * S, the denominator's base) are saved, and the gradient is

    dL/da_j = g_j p_j - 2 alpha' beta a_j * sum_{i : j in window(i)} g_i a_i p_i / d_i,

with d recomputed from the input (squares and a window sum: cheap next to a power), so the power
is taken once, forward. With power='vector' (the CPU's kernels, chosen in kernels.py) it is
taken in a form XLA:CPU vectorizes (`_scale`): the LRN's forward + backward runs 1.3-1.7x faster
at the paper's and the quickstart's sizes (bench/RESULTS.md), within 2e-7 of `d ** -beta`.

Precision: the squares, their window sum, the power and the gradient's window sum run in
float32 whatever the input dtype; bfloat16 inputs come back as bfloat16 (rounded once, at the
end). A bfloat16 sum of squares would carry 8 bits over values up to ~1e4 times apart.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

ALPHA_CONVENTIONS = ('code', 'paper')


def effective_alpha(alpha: float, size: int, convention: str) -> float:
  """The coefficient alpha' that multiplies the window sum, for either convention."""
  if convention == 'code':
    return alpha / size
  if convention == 'paper':
    return alpha
  raise ValueError(
      f'Unknown LRN alpha convention {convention!r}; use one of {ALPHA_CONVENTIONS}.')


def _window(size: int) -> tuple[int, int]:
  """Channels before and after i in i's window (centred; an even size leans forward)."""
  before = (size - 1) // 2
  return before, size - 1 - before


def _window_sum(x: jax.Array, before: int, after: int) -> jax.Array:
  """sum_{j=i-before}^{i+after} x_j over the last axis, with zeros outside the edges."""
  channels = x.shape[-1]
  pad = [(0, 0)] * (x.ndim - 1) + [(before, after)]
  padded = jnp.pad(x, pad)
  total = padded[..., 0:channels]
  for offset in range(1, before + after + 1):
    total = total + padded[..., offset:offset + channels]
  return total


def _denominator(x32, size, k, alpha_eff):
  before, after = _window(size)
  return k + alpha_eff * _window_sum(x32 * x32, before, after)


# float32 lanes of the widest CPU vectors (AVX-512).
_VECTOR_LANES = 16
# How d ** -beta is taken: 'plain' as written, 'vector' in forms XLA:CPU vectorizes (`_scale`).
POWER_FORMS = ('plain', 'vector')


def _scale(d, beta, power):
  """d ** -beta (d >= k > 0); with power='vector' in the forms XLA:CPU vectorizes.

  `d ** -beta` is a scalar call per element there; for the paper's beta = 0.75,
  rsqrt(d * sqrt(d)) is not. When the channel axis is not a whole number of vectors (the
  quickstart's 12 channels per column), XLA's loop over it stays scalar whatever the op; over
  the flattened array it vectorizes again (1.4-1.5x faster forward + backward at 12 channels,
  slower at 32 and 48). power='plain': `d ** -beta` (the accelerators' form).
  """
  if power == 'plain':
    return d ** -beta
  if d.shape[-1] % _VECTOR_LANES:
    return _vector_power(d.reshape(-1), beta).reshape(d.shape)
  return _vector_power(d, beta)


def _vector_power(d, beta):
  if beta == 0.75:
    return jax.lax.rsqrt(d * jnp.sqrt(d))
  return d ** -beta


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def _lrn(x, size, k, alpha_eff, beta, power):
  x32 = x.astype(jnp.float32)
  return (x32 * _scale(_denominator(x32, size, k, alpha_eff), beta, power)).astype(x.dtype)


def _lrn_fwd(x, size, k, alpha_eff, beta, power):
  x32 = x.astype(jnp.float32)
  p = _scale(_denominator(x32, size, k, alpha_eff), beta, power)
  return (x32 * p).astype(x.dtype), (x, p)


def _lrn_bwd(size, k, alpha_eff, beta, power, residuals, g):
  x, p = residuals
  x32 = x.astype(jnp.float32)
  g32 = g.astype(jnp.float32)
  d = _denominator(x32, size, k, alpha_eff)
  inner = g32 * x32 * p / d
  before, after = _window(size)
  # j is in window(i) iff i is in the mirrored window of j.
  back = _window_sum(inner, after, before)
  grad = g32 * p - 2.0 * alpha_eff * beta * x32 * back
  return (grad.astype(x.dtype),)


_lrn.defvjp(_lrn_fwd, _lrn_bwd)


def local_response_norm(x: jax.Array, *, size: int = 5, k: float = 2.0, alpha: float = 1e-4,
                        beta: float = 0.75, alpha_convention: str = 'code',
                        power: str = 'plain') -> jax.Array:
  """LRN across the last axis; the defaults are the paper's net as the original code ran it.

  power: how d ** -beta is taken, one of POWER_FORMS (the model passes its kernels' choice,
  kernels.py: 'vector' on CPU); the same numbers within 2e-7.
  """
  if size < 1:
    raise ValueError(f'LRN size must be >= 1, got {size}.')
  if power not in POWER_FORMS:
    raise ValueError(f'LRN power form {power!r}; use one of {POWER_FORMS}.')
  alpha_eff = effective_alpha(alpha, size, alpha_convention)
  return _lrn(x, int(size), float(k), float(alpha_eff), float(beta), power)
