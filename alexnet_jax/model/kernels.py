"""How each layer runs: the kernels of each platform, chosen once, from the platform, by `choose`.

The same net (same parameters, same numbers up to float rounding) runs through different
kernels where XLA's backends differ in what is fast:

  conv        own-column convolutions of several columns on one device: 'split' (one ordinary
              convolution per column) or 'grouped' (one convolution, feature_group_count =
              columns; XLA:CPU's is ~3x slower, bench/RESULTS.md)
  conv1       conv1 (11x11, stride 4): 'conv' (XLA's convolution) or 'im2col' (strided patches
              and one matmul)
  dense       fc layers: 'column_batched' (a matmul batched over the column axis, 'cbi,cio->cbo':
              each column's kernel used where it lies; 'bi,cio->bco' makes XLA:CPU copy fc6's
              kernel into per-column pieces every step) or 'einsum' ('bi,cio->bco')
  bias        'windowed' (the bias gradient as a reduce-window XLA:CPU does not fuse, see
              `_add_bias_bwd`) or 'plain' (autodiff's sum)
  pool        max-pooling: 'written' (pooling.py's backward pass written out; XLA:CPU's own is
              several times slower) or 'xla' (reduce_window and its autodiff)
  lrn_power   LRN's d ** -beta: 'vector' (forms XLA:CPU vectorizes, lrn.py) or 'plain'

`choose(model_config)` resolves them from `model.platform` ('auto': jax.default_backend() when
the model is built; 'cpu', 'gpu' or 'tpu' to run another platform's kernels anywhere, e.g. the
accelerators' on a CPU in the tests) and the `conv_impl` / `conv1_impl` overrides. The model
calls it once, at construction, and keeps the result as a static attribute: the graphdef carries
it, so every step built from the graphdef runs the same kernels. Nothing else in the package
reads the backend to pick a kernel. GPU and TPU take the same kernels today (XLA's own).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from alexnet_jax.model import pooling
from alexnet_jax.model.layers import ConvLayer, layer_padding


@dataclasses.dataclass(frozen=True)
class Kernels:
  """The resolved kernel of each part of the net (see the module docstring for the choices)."""
  platform: str            # 'cpu', 'gpu', 'tpu' (or another backend's name: XLA's kernels)
  conv: str                # 'split' | 'grouped'
  conv1: str               # 'conv' | 'im2col'
  dense: str               # 'column_batched' | 'einsum'
  bias: str                # 'windowed' | 'plain'
  pool: str                # 'written' | 'xla'
  lrn_power: str           # 'vector' | 'plain'


def choose(model_config=None) -> Kernels:
  """The kernels for `model_config` (None: the defaults, on the default backend).

  The one place a kernel is chosen from the platform: 'auto' is jax.default_backend(); the CPU
  gets the kernels written for XLA:CPU, every other platform XLA's own. `conv_impl` and
  `conv1_impl` other than 'auto' override their parts on any platform.
  """
  get = (lambda field: 'auto') if model_config is None else (
      lambda field: model_config.get(field, 'auto'))
  platform = get('platform')
  if platform == 'auto':
    platform = jax.default_backend()
  cpu = platform == 'cpu'
  conv = get('conv_impl')
  conv1 = get('conv1_impl')
  return Kernels(
      platform=platform,
      conv=conv if conv != 'auto' else ('split' if cpu else 'grouped'),
      conv1=conv1 if conv1 != 'auto' else 'conv',
      dense='column_batched' if cpu else 'einsum',
      bias='windowed' if cpu else 'plain',
      pool='written' if cpu else 'xla',
      lrn_power='vector' if cpu else 'plain')


# ------------------------------------------------------------------------------- convolutions
def _merged_kernel(kernel: jax.Array) -> jax.Array:
  """[C, kh, kw, in, out] -> HWIO [kh, kw, in, C * out], columns' outputs side by side."""
  c, kh, kw, cin, cout = kernel.shape
  return kernel.transpose(1, 2, 3, 0, 4).reshape(kh, kw, cin, c * cout)


def _conv(x, kernel_hwio, stride, padding, groups=1):
  return jax.lax.conv_general_dilated(
      x, kernel_hwio, (stride, stride), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=groups)


def _conv_im2col(x, kernel_hwio, stride, padding):
  """The same convolution as strided patches and one matmul (much faster on XLA:CPU for conv1)."""
  kh, kw, cin, cout = kernel_hwio.shape
  x = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  out_h = (x.shape[1] - kh) // stride + 1
  out_w = (x.shape[2] - kw) // stride + 1
  patches = [x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
             for i in range(kh) for j in range(kw)]
  patches = jnp.concatenate(patches, axis=-1)  # [B, oh, ow, kh*kw*cin], (i, j, c) order
  return patches @ kernel_hwio.reshape(kh * kw * cin, cout)


def _own_column_conv(kernels: Kernels, x, kernel, stride, padding):
  """Each column's kernel [C, ...] on its own column's channels of x, outputs side by side."""
  columns = kernel.shape[0]
  if columns == 1:
    return _conv(x, kernel[0], stride, padding)
  if kernels.conv == 'grouped':
    return _conv(x, _merged_kernel(kernel), stride, padding, groups=columns)
  per = x.shape[-1] // columns
  return jnp.concatenate(
      [_conv(x[..., c * per:(c + 1) * per], kernel[c], stride, padding)
       for c in range(columns)], axis=-1)


def conv_layer(cfg, layer: ConvLayer, kernel, bias, x, kernels: Kernels | None = None):
  """One conv layer of every column (kernel [C, kh, kw, in, out], bias [C, out]), before its
  activation, with `kernels` (the model's; None: `choose(cfg)`)."""
  kernels = choose(cfg) if kernels is None else kernels
  padding = layer_padding(cfg, layer)
  if not layer.both_columns:
    y = _own_column_conv(kernels, x, kernel, layer.stride, padding)
  elif layer.name == 'conv1' and kernels.conv1 == 'im2col':
    y = _conv_im2col(x, _merged_kernel(kernel), layer.stride, padding)
  else:
    y = _conv(x, _merged_kernel(kernel), layer.stride, padding)
  return add_bias(y, bias.reshape(-1), kernels)


# ------------------------------------------------------------------------------------ dense
def dense_layer(x, kernel, bias, kernels: Kernels | None = None):
  """x [B, in] times every column's kernel [C, in, out] -> [B, C * out], columns side by side.

  'column_batched' (the CPU's): a matmul batched over the column axis ('cbi,cio->cbo'): each
  column's kernel is used where it lies, where 'bi,cio->bco' makes XLA:CPU copy it into
  per-column pieces every step (fc6's 2 x 37.7 MB forward and backward; bench/RESULTS.md).
  'einsum' (the accelerators'): 'bi,cio->bco'. `kernels` None: `choose()`.
  """
  kernels = choose() if kernels is None else kernels
  if kernels.dense == 'einsum':
    return (jnp.einsum('bi,cio->bco', x, kernel) + bias).reshape(x.shape[0], -1)
  columns = kernel.shape[0]
  y = jnp.einsum('cbi,cio->cbo', jnp.broadcast_to(x, (columns,) + x.shape), kernel)
  return (y + bias[:, None, :]).transpose(1, 0, 2).reshape(x.shape[0], -1)


# ------------------------------------------------------------------------------------- bias
@jax.custom_vjp
def _add_bias(y, bias):
  return y + bias


def _add_bias_fwd(y, bias):
  return y + bias, None


def _add_bias_bwd(_, g):
  """The bias gradient as a windowed sum, which XLA does not fuse with what produces `g`.

  Left to autodiff (a plain sum), XLA:CPU may fuse the whole elementwise backward of what follows
  (ReLU, LRN) into the bias gradient's reduction, a loop it runs on one thread with strided
  reads (270 ms of the paper net's 2.3 s step, for conv2), or into the transposes of `g` that
  the kernel gradient needs (3 ms of the quickstart's 80 ms, for conv1). A reduce-window takes
  `g` as it is materialized once, in parts that run in parallel.
  """
  # Windows over whole examples (and all positions), in place on `g`: a reshape would make XLA
  # materialize a second, reshaped copy and still fuse the backward into the transposes.
  batch = g.shape[0]
  parts = next(p for p in (16, 8, 4, 2, 1) if batch % p == 0)
  window = (batch // parts,) + g.shape[1:-1] + (1,)
  partial = jax.lax.reduce_window(g, jnp.zeros((), g.dtype), jax.lax.add, window, window,
                                  'VALID')
  return g, jnp.sum(partial, axis=tuple(range(g.ndim - 1)))


_add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def add_bias(y, bias, kernels: Kernels | None = None):
  """y [..., C] + bias [C]; with 'windowed' bias kernels the bias gradient computed as above."""
  kernels = choose() if kernels is None else kernels
  return _add_bias(y, bias) if kernels.bias == 'windowed' else y + bias


# ------------------------------------------------------------------------------------ pooling
def max_pool(x, window: int, stride: int, kernels: Kernels):
  """Max over `window` x `window` windows every `stride` pixels of NHWC x (VALID): the same
  numbers, forward and backward, either way."""
  if kernels.pool == 'written':
    return pooling.max_pool(x, window, stride)
  # A Python -inf makes this lax's differentiable max-pool (reduce_window_max) in any dtype; an
  # array init value would make it a generic reduce-window, which autodiff refuses.
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, stride, stride, 1), 'VALID')
