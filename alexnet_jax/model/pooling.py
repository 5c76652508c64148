"""Max-pooling over H and W of NHWC arrays (VALID windows) with a backward pass written out.

Autodiff of `lax.reduce_window(max)` becomes, on XLA:CPU, a variadic reduce-window that tracks
the arg-max with four s32 index arrays (an iota per dimension, each the size of the input) and
a scatter: on the paper's pool1 that is 4x the time of the same pooling here
(bench/RESULTS.md). Here the forward keeps only the input and the output, and the backward
routes each output's gradient to the FIRST position of its window (row-major) that holds the
maximum, exactly as XLA's select-and-scatter and PyTorch's max_pool2d do:

    dx = sum over window offsets (i, j) of  g * [x_ij == y and no earlier offset matched],
         each term placed at its offset with stride `stride`.

The placement is assembled per phase (position mod stride), so the backward is elementwise work
on output-sized arrays plus one interleaving, which XLA fuses.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _offset_slices(x, window: int, stride: int, out_h: int, out_w: int):
  """(i, j) -> x[:, i::stride, j::stride] cut to the output size, for every window offset."""
  return {(i, j): x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
          for i in range(window) for j in range(window)}


def _output_size(size: int, window: int, stride: int) -> int:
  return (size - window) // stride + 1


def _forward(x, window, stride):
  return jax.lax.reduce_window(x, jnp.array(-jnp.inf, x.dtype), jax.lax.max,
                               (1, window, window, 1), (1, stride, stride, 1), 'VALID')


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _max_pool(x, window, stride):
  return _forward(x, window, stride)


def _max_pool_fwd(x, window, stride):
  y = _forward(x, window, stride)
  return y, (x, y)


def _max_pool_bwd(window, stride, residuals, g):
  x, y = residuals
  batch, height, width, channels = x.shape
  out_h, out_w = y.shape[1], y.shape[2]
  zero = jnp.zeros((), g.dtype)
  routed = {}
  claimed = None
  for offset, piece in _offset_slices(x, window, stride, out_h, out_w).items():
    hit = piece == y
    if claimed is not None:
      hit = hit & ~claimed
    claimed = hit if claimed is None else claimed | hit
    routed[offset] = jnp.where(hit, g, zero)
  # Input row r = stride * q + phase: offset i feeds phase i % stride of block q = o + i // stride.
  blocks_h, blocks_w = -(-height // stride), -(-width // stride)
  phases = []
  for phase_h in range(stride):
    row = []
    for phase_w in range(stride):
      total = jnp.zeros((batch, blocks_h, blocks_w, channels), g.dtype)
      for (i, j), part in routed.items():
        if i % stride == phase_h and j % stride == phase_w:
          top, left = i // stride, j // stride
          total = total + jnp.pad(part, ((0, 0), (top, blocks_h - out_h - top),
                                         (left, blocks_w - out_w - left), (0, 0)))
      row.append(total)
    phases.append(jnp.stack(row, axis=3))                 # [B, blocks_h, blocks_w, s, C]
  dx = jnp.stack(phases, axis=2)                          # [B, blocks_h, s, blocks_w, s, C]
  dx = dx.reshape(batch, blocks_h * stride, blocks_w * stride, channels)
  return (dx[:, :height, :width],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x: jax.Array, window: int, stride: int) -> jax.Array:
  """Max over `window` x `window` windows every `stride` pixels of NHWC `x` (VALID)."""
  return _max_pool(x, int(window), int(stride))
