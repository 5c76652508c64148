"""The paper's AlexNet as a Flax NNX module, and the variants the ablations need.

The net is built from the layer tables of layers.py and runs with the kernels kernels.py
chooses, once, when the module is built (`AlexNet.kernels`, static: the graphdef carries it).

Every parameter carries a leading COLUMN axis: conv kernels are [columns, kh, kw, in,
out_per_column], fc kernels [columns, in, out_per_column], biases [columns, out_per_column]. The
tree is the same whether both columns live on one device or each on its own (`column_axis`, see
parallel.py).

Activations are NHWC with the columns' channels side by side ([..., columns * c]). A layer that
sees "both columns" takes all of them; an "own column" layer gives column c only its own slice.
Under `jax.shard_map` with `column_axis='model'` each device holds one column (local columns = 1)
and the layers that see both columns all-gather their input over that axis: exactly the points
where the paper's two GPUs talked (conv3, fc6, fc7, fc8).

Precision (`model.dtype`): parameters are float32 and are cast to the compute dtype where a layer
uses them; the cast's transpose brings their gradients back to float32, so the optimizer and
its state stay float32. In bfloat16 the convolutions, matmuls, bias adds, activations, pooling,
dropout and the columns' all-gathers run in bfloat16, forward and backward (on GPU and TPU,
XLA's bfloat16 matmuls and convolutions accumulate in float32 and round the result); LRN takes
its squares, window sums, power and backward window sum in float32 (lrn.py); the logits are
cast to float32 at the end of `__call__`, so the softmax, the loss and their sums over the batch
(parallel.py, train/evaluate.py) run in float32 (tests/model/test_precision.py checks where).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from alexnet_jax.model import kernels as kernels_lib
from alexnet_jax.model.kernels import conv_layer, dense_layer  # noqa: F401 (public here)
from alexnet_jax.model.layers import (ConvLayer, DenseLayer, architecture,  # noqa: F401
                                      conv1_padding, init_std, scaled)
from alexnet_jax.model.lrn import local_response_norm


class ColumnConv(nnx.Module):
  """One conv layer of every column: kernel [columns, kh, kw, in, out_per_column]."""

  def __init__(self, columns: int, in_features: int, out_features: int, kernel: int,
               weight_std: float, bias: float, *, rngs: nnx.Rngs):
    shape = (columns, kernel, kernel, in_features, out_features)
    self.kernel = nnx.Param(weight_std * jax.random.normal(rngs.params(), shape, jnp.float32))
    self.bias = nnx.Param(jnp.full((columns, out_features), bias, jnp.float32))


class ColumnDense(nnx.Module):
  """One fully connected layer of every column: kernel [columns, in, out_per_column]."""

  def __init__(self, columns: int, in_features: int, out_features: int, weight_std: float,
               bias: float, *, rngs: nnx.Rngs):
    shape = (columns, in_features, out_features)
    self.kernel = nnx.Param(weight_std * jax.random.normal(rngs.params(), shape, jnp.float32))
    self.bias = nnx.Param(jnp.full((columns, out_features), bias, jnp.float32))


@dataclasses.dataclass(frozen=True)
class Call:
  """What one call of the net passes to every block, besides the activations.

  train: dropout masks (from `dropout_key`) rather than the test-time scaling.
  column_axis: the mesh axis that holds the columns, inside `jax.shard_map` (else None).
  data_axis: the mesh axis the batch is split over, inside `jax.shard_map`; only dropout needs
    it (its masks are drawn for the global batch, so they do not depend on the split).
  capture: if given, receives each layer's output by name ('conv1', 'pool1', ..., 'fc8').
  """
  train: bool = False
  dropout_key: jax.Array | None = None
  column_axis: str | None = None
  data_axis: str | None = None
  capture: dict[str, Any] | None = None

  def gather(self, x, to='varying'):
    """Every column's channels (the last axis), in column order."""
    if self.column_axis is None:
      return x
    return jax.lax.all_gather(x, self.column_axis, axis=x.ndim - 1, tiled=True, to=to)

  def record(self, name: str, x) -> None:
    if self.capture is not None:
      self.capture[name] = x


class AlexNet(nnx.Module):
  """The paper's two-column net (or a variant) built from `config.model`."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    cfg = ml_collections.FrozenConfigDict(cfg)
    self.cfg = cfg
    self.conv_layers, self.dense_layers = architecture(cfg)
    self.kernels = kernels_lib.choose(cfg)  # static: the graphdef carries it
    self.columns = cfg.columns
    in_per_column = in_total = 3
    for layer in self.conv_layers:
      out = scaled(layer.features, cfg.width)
      cin = in_total if layer.both_columns else in_per_column
      std = init_std(cfg, layer.name, layer.kernel * layer.kernel * cin)
      bias = cfg.bias_init if layer.bias_one else 0.0
      setattr(self, layer.name, ColumnConv(cfg.columns, cin, out, layer.kernel, std, bias,
                                           rngs=rngs))
      in_per_column, in_total = out, out * cfg.columns
    size = self.feature_map_sizes()[-1]
    in_total = size * size * in_total
    for layer in self.dense_layers:
      out = (cfg.num_classes // cfg.columns if layer.features == 0
             else scaled(layer.features, cfg.width))
      std = init_std(cfg, layer.name, in_total)
      bias = cfg.bias_init if layer.bias_one else 0.0
      setattr(self, layer.name, ColumnDense(cfg.columns, in_total, out, std, bias, rngs=rngs))
      in_total = out * cfg.columns

  def feature_map_sizes(self) -> list[int]:
    """Spatial size after each conv block (after its pooling): 55->27, 27, 13, 13, 6 for 224."""
    cfg = self.cfg
    (top, bottom), _ = conv1_padding(cfg)
    size = (cfg.input_size + top + bottom - 11) // 4 + 1
    window = 3 if cfg.overlap_pool else 2
    sizes = []
    for layer in self.conv_layers:
      if layer.name != 'conv1':
        size = size + 2 * layer.padding - layer.kernel + 1
      if layer.pool:
        size = (size - window) // 2 + 1
      sizes.append(size)
    return sizes

  # ------------------------------------------------------------------------- the forward pass
  def __call__(self, images: jax.Array, *, train: bool = False,
               dropout_key: jax.Array | None = None, column_axis: str | None = None,
               data_axis: str | None = None,
               capture: dict[str, Any] | None = None) -> jax.Array:
    """Logits [batch, num_classes] (float32) for NHWC `images`; the arguments are `Call`'s."""
    call = Call(train, dropout_key, column_axis, data_axis, capture)
    x = images.astype(jnp.dtype(self.cfg.dtype))
    for layer in self.conv_layers:
      x = self._conv_block(layer, x, call)
    for index, layer in enumerate(self.dense_layers):
      x = self._dense_block(index, layer, x, call)
    # fc8's outputs are split between the columns: the softmax needs them all. Gathered as
    # 'invarying' (the same logits on both devices), so the backward pass needs no exchange here:
    # each column takes its own slice of the logits' gradient.
    return call.gather(x, to='invarying').astype(jnp.float32)

  def _conv_block(self, layer: ConvLayer, x, call: Call):
    """conv -> activation (-> LRN) (-> pool), or the original code's conv1 -> LRN -> pool ->
    activation (lrn_placement='code')."""
    cfg = self.cfg
    module = getattr(self, layer.name)
    columns = module.kernel.shape[0]  # on this device
    if layer.both_columns and layer.name != 'conv1':
      x = call.gather(x)
    dtype = jnp.dtype(cfg.dtype)
    x = conv_layer(cfg, layer, module.kernel[...].astype(dtype), module.bias[...].astype(dtype),
                   x, self.kernels)
    call.record(layer.name, x)
    use_lrn = cfg.lrn and layer.lrn
    if use_lrn and cfg.lrn_placement == 'code' and layer.name == 'conv1':
      x = self._activation(self._pool(self._lrn(x, columns)))
    else:
      x = self._activation(x)
      if use_lrn:
        x = self._lrn(x, columns)
      if layer.pool:
        x = self._pool(x)
    if layer.pool:
      call.record('pool' + layer.name[-1], x)
    return x

  def _dense_block(self, index: int, layer: DenseLayer, x, call: Call):
    """(dropout ->) fc (-> activation) (-> dropout), on every column's inputs."""
    cfg = self.cfg
    module = getattr(self, layer.name)
    columns = module.kernel.shape[0]  # on this device
    if layer.dropout == 'input':  # on this device's columns, before they are gathered
      x = self._dropout(x, index, columns, call)
    x = call.gather(x)
    if index == 0:
      # fc6 sees both columns: gather pool5's channels BEFORE flattening, so that its input
      # is ordered (h, w, every column's channels) on every mesh, as on one device.
      x = x.reshape(x.shape[0], -1)
    dtype = jnp.dtype(cfg.dtype)
    x = dense_layer(x, module.kernel[...].astype(dtype), module.bias[...].astype(dtype),
                    self.kernels)
    if layer.name != self.dense_layers[-1].name:
      x = self._activation(x)
    if layer.dropout == 'output':
      x = self._dropout(x, index, columns, call)
    call.record(layer.name, x)
    return x

  # ------------------------------------------------------------------------- the layers' parts
  def _activation(self, x):
    return jax.nn.relu(x) if self.cfg.activation == 'relu' else jnp.tanh(x)

  def _lrn(self, x, columns):
    """LRN of each column over its own channels of x [..., columns * c]."""
    cfg = self.cfg
    shape = x.shape
    x = x.reshape(shape[:-1] + (columns, shape[-1] // columns))
    x = local_response_norm(x, size=cfg.lrn_size, k=cfg.lrn_k, alpha=cfg.lrn_alpha,
                            beta=cfg.lrn_beta, alpha_convention=cfg.lrn_alpha_convention,
                            power=self.kernels.lrn_power)
    return x.reshape(shape)

  def _pool(self, x):
    window = 3 if self.cfg.overlap_pool else 2
    return kernels_lib.max_pool(x, window, 2, self.kernels)

  def _dropout(self, x, layer_index: int, columns: int, call: Call):
    """Dropout on x [..., columns * c] (this device's columns), as `call.train` says."""
    rate = self.cfg.dropout
    if rate == 0.0:
      return x
    keep = 1.0 - rate
    if not call.train:
      return x * keep if self.cfg.dropout_mode == 'paper' else x
    if call.dropout_key is None:
      raise ValueError('Training with dropout needs a dropout_key.')
    mask = self._dropout_mask(x, jax.random.fold_in(call.dropout_key, layer_index), columns, call)
    x = jnp.where(mask, x, jnp.zeros((), x.dtype))
    return x / keep if self.cfg.dropout_mode == 'inverted' else x

  def _dropout_mask(self, x, key, columns: int, call: Call):
    """One mask per column, keyed by the column's global index, drawn for the GLOBAL batch (this
    shard keeps its own rows): the masks do not depend on how columns or examples are spread
    over devices, so every mesh computes the same numbers."""
    keep = 1.0 - self.cfg.dropout
    first = 0 if call.column_axis is None else jax.lax.axis_index(call.column_axis) * columns
    per = x.shape[-1] // columns
    batch = x.shape[0]
    shards = 1 if call.data_axis is None else jax.lax.axis_size(call.data_axis)
    shape = (batch * shards,) + x.shape[1:-1] + (per,)

    def mask_of(c):
      mask = jax.random.bernoulli(jax.random.fold_in(key, first + c), keep, shape)
      if call.data_axis is None:
        return mask
      return jax.lax.dynamic_slice_in_dim(mask, jax.lax.axis_index(call.data_axis) * batch,
                                          batch)

    masks = [mask_of(c) for c in range(columns)]
    return jnp.concatenate(masks, axis=-1) if columns > 1 else masks[0]


def create_model(cfg, seed: int = 0) -> AlexNet:
  return AlexNet(cfg, rngs=nnx.Rngs(params=seed))


def count_parameters(model: nnx.Module) -> int:
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
