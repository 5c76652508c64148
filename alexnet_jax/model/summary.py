"""The model summary: layers, output shapes, parameter counts, and what the columns exchange.

Needs no data and allocates no parameters (shapes come from `nnx.eval_shape`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from alexnet_jax.model import alexnet as model_lib


@dataclasses.dataclass(frozen=True)
class Exchange:
  """A point where the columns talk: each device sends its own column's part of `tensor`."""
  layer: str              # the layer whose input (or output, for the logits) is exchanged
  per_example: int        # elements one column contributes for one example
  bytes_per_step: int     # forward + backward bytes each device sends per step


def _abstract_model(cfg) -> model_lib.AlexNet:
  return nnx.eval_shape(lambda: model_lib.create_model(cfg))


def _activations(cfg) -> dict[str, tuple[int, ...]]:
  """Per-example output shape of every layer, traced without allocating anything."""
  captured = {}

  def forward(images):
    return model_lib.create_model(cfg)(images, capture=captured)

  size = cfg.input_size
  jax.eval_shape(forward, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  return {name: tuple(a.shape[1:]) for name, a in captured.items()}


def column_exchanges(cfg, batch_size: int, data_parallel: int = 1) -> list[Exchange]:
  """Bytes each device sends per training step when the two columns sit on two devices.

  Forward: at each input that sees both columns, every device sends its column's activations
  (an all-gather of two halves). Backward: the transpose (a reduce-scatter) sends as much again.
  The logits (fc8's outputs, split between the columns) are gathered forward only.
  `batch_size` is the global batch; each model-parallel pair sees batch_size / data_parallel.
  Computed from shapes; the collective count is checked against compiled HLO in the tests.
  """
  if cfg.columns != 2:
    return []
  abstract = _abstract_model(cfg)
  shapes = _activations(cfg)
  itemsize = jnp.dtype(cfg.dtype).itemsize
  local_batch = batch_size // data_parallel
  names = [layer.name for layer in abstract.conv_layers] + [
      layer.name for layer in abstract.dense_layers]
  previous = {name: names[i - 1] for i, name in enumerate(names) if i}
  previous['fc6'] = 'pool5'
  points = [layer.name for layer in abstract.conv_layers if layer.both_columns
            and layer.name != 'conv1'] + [layer.name for layer in abstract.dense_layers]
  exchanges = []
  for name in points:
    source = previous[name]
    if source.startswith('conv') and source.replace('conv', 'pool') in shapes:
      source = source.replace('conv', 'pool')
    total = 1
    for dim in shapes[source]:
      total *= dim
    per_column = total // 2
    exchanges.append(Exchange(name, per_column, 2 * per_column * local_batch * itemsize))
  # The logits are gathered forward only: both devices then hold the same logits, and each
  # column's share of their gradient is simply its own slice (no exchange backward).
  logits_per_column = cfg.num_classes // 2
  exchanges.append(Exchange('logits', logits_per_column,
                            logits_per_column * local_batch * itemsize))
  return exchanges


def _fmt_bytes(n: int) -> str:
  for unit in ('B', 'KiB', 'MiB', 'GiB'):
    if n < 1024 or unit == 'GiB':
      return f'{n:,.0f} {unit}' if unit == 'B' else f'{n:,.2f} {unit}'
    n /= 1024
  raise AssertionError


def summarize(cfg, batch_size: int, data_parallel: int = 1) -> str:
  """The table printed by `main.py --mode=summary` for `cfg` (= config.model)."""
  abstract = _abstract_model(cfg)
  shapes = _activations(cfg)
  params = nnx.state(abstract, nnx.Param)
  head = []
  exchanges = column_exchanges(cfg, batch_size, data_parallel)
  if exchanges:
    head.append('')
    head.append(f'Column exchanges with the two columns on two devices, global batch '
                 f'{batch_size}, {data_parallel} data-parallel replica(s) '
                 f'({jnp.dtype(cfg.dtype).name}; forward all-gather + backward reduce-scatter, logits '
                 'forward only):')
    for e in exchanges:
      head.append(f'  input of {e.layer:<7} {e.per_example:>8,} values/example/column  '
                   f'{_fmt_bytes(e.bytes_per_step):>12} sent per device per step'
                   if e.layer != 'logits' else
                   f'  logits (fc8 out) {e.per_example:>7,} values/example/column  '
                   f'{_fmt_bytes(e.bytes_per_step):>12} sent per device per step')
    head.append(f'  total: {_fmt_bytes(sum(e.bytes_per_step for e in exchanges))} sent by each '
                 'device per step')
    head.append('')
  lines = head
  header = f"{'layer':<8} {'output':>16} {'columns':>8} {'input from':>12} {'parameters':>14}"
  lines.append(header)
  lines.append('-' * len(header))
  total = 0
  layers = {layer.name: layer for layer in abstract.conv_layers + abstract.dense_layers}
  for name, shape in shapes.items():
    count = 0
    source = ''
    if name in layers:
      count = sum(x.size for x in jax.tree.leaves(params[name]))
      both = getattr(layers[name], 'both_columns', True)
      source = 'own column' if not both and cfg.columns > 1 else 'all columns'
      source = 'image' if name == 'conv1' else source
    total += count
    out = 'x'.join(str(d) for d in shape)
    lines.append(f"{name:<8} {out:>16} {cfg.columns:>8} {source:>12} {count:>14,}")
  lines.append('-' * len(header))
  lines.append(f'Total parameters: {total:,}')
  return '\n'.join(lines)
