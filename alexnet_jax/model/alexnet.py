"""The paper's AlexNet as a Flax NNX module, and the variants the ablations need.

Every parameter carries a leading COLUMN axis: conv kernels are [columns, kh, kw, in, out_per_column],
fc kernels [columns, in, out_per_column], biases [columns, out_per_column]. The tree is the same
whether both columns live on one device or each on its own (`column_axis`, see parallel.py).

Activations are NHWC with the columns' channels side by side ([..., columns * c]). A layer that
sees "both columns" takes all of them; an "own column" layer gives column c only its own slice.
Under `jax.shard_map` with `column_axis='model'` each device holds one column (local columns = 1)
and the layers that see both columns all-gather their input over that axis: exactly the points
where the paper's two GPUs talked (conv3, fc6, fc7, fc8).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from alexnet_jax import config_schema
from alexnet_jax.model import pooling
from alexnet_jax.model.lrn import local_response_norm


@dataclasses.dataclass(frozen=True)
class ConvLayer:
  name: str
  features: int            # per column, before the width multiplier
  kernel: int
  stride: int
  padding: int             # symmetric zero padding (conv1's is decided by the input size)
  both_columns: bool       # input is every column's channels (else its own column's)
  bias_one: bool           # starts at config.bias_init (else 0)
  lrn: bool                # followed by LRN (when config.lrn)
  pool: bool               # followed by max-pooling


@dataclasses.dataclass(frozen=True)
class DenseLayer:
  name: str
  features: int            # per column, before the width multiplier; 0 = num_classes / columns
  bias_one: bool
  # Where dropout (config.dropout) goes, training and test-time scaling alike: 'output' (after
  # the ReLU, as the paper's fc6 and fc7), 'input' (on the layer's input, as torchvision's
  # classifier: Dropout -> Linear), or '' (none).
  dropout: str


def _paper_layers(columns: int) -> tuple[tuple[ConvLayer, ...], tuple[DenseLayer, ...]]:
  """PAPER.md's layer table; columns=1 is the one-GPU ablation net (run 145-half)."""
  conv5, fc = (128, 2048) if columns == 2 else (256, 4096)
  convs = (
      ConvLayer('conv1', 48, 11, 4, 0, True, False, True, True),
      ConvLayer('conv2', 128, 5, 1, 2, False, True, True, True),
      ConvLayer('conv3', 192, 3, 1, 1, True, False, False, False),
      ConvLayer('conv4', 192, 3, 1, 1, False, True, False, False),
      ConvLayer('conv5', conv5, 3, 1, 1, False, True, False, True),
  )
  dense = (DenseLayer('fc6', fc, True, 'output'), DenseLayer('fc7', fc, True, 'output'),
           DenseLayer('fc8', 0, False, ''))
  return convs, dense


def _one_weird_trick_layers() -> tuple[tuple[ConvLayer, ...], tuple[DenseLayer, ...]]:
  """Krizhevsky (2014)'s single-column net, as torchvision ships it (conv1 padding 2).

  No LRN (whatever model.lrn says), and torchvision's classifier order: Dropout -> fc6 -> ReLU
  -> Dropout -> fc7 -> ReLU -> fc8, i.e. dropout on the INPUTS of fc6 and fc7.
  """
  convs = (
      ConvLayer('conv1', 64, 11, 4, 2, True, False, False, True),
      ConvLayer('conv2', 192, 5, 1, 2, True, True, False, True),
      ConvLayer('conv3', 384, 3, 1, 1, True, False, False, False),
      ConvLayer('conv4', 256, 3, 1, 1, True, True, False, False),
      ConvLayer('conv5', 256, 3, 1, 1, True, True, False, True),
  )
  dense = (DenseLayer('fc6', 4096, True, 'input'), DenseLayer('fc7', 4096, True, 'input'),
           DenseLayer('fc8', 0, False, ''))
  return convs, dense


def architecture(cfg) -> tuple[tuple[ConvLayer, ...], tuple[DenseLayer, ...]]:
  config_schema.check(cfg, 'model')  # a model built from an invalid config fails here
  if cfg.variant == 'one_weird_trick':
    return _one_weird_trick_layers()
  return _paper_layers(cfg.columns)


def conv1_padding(cfg) -> tuple[tuple[int, int], tuple[int, int]]:
  """conv1's (top, bottom), (left, right) zero padding for the configured input size.

  227 (Caffe): none. one_weird_trick: 2 on every side (torchvision). Otherwise the original
  code's rule: cuda-convnet sizes the output with ceil, so the last windows run off the
  bottom/right edge into zeros: 224 -> padding (0, 3) -> 55x55.
  """
  if cfg.variant == 'one_weird_trick':
    return (2, 2), (2, 2)
  size = cfg.input_size
  if size == 227:
    return (0, 0), (0, 0)
  out = math.ceil((size - 11) / 4) + 1
  extra = (out - 1) * 4 + 11 - size
  return (0, extra), (0, extra)


def scaled(features: int, width: float) -> int:
  return max(1, int(round(features * width)))


def _on_cpu() -> bool:
  return jax.default_backend() == 'cpu'


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


def dense_layer(x, kernel, bias):
  """x [B, in] times every column's kernel [C, in, out] -> [B, C * out], columns side by side.

  On CPU as a matmul batched over the column axis ('cbi,cio->cbo'): each column's kernel is
  used where it lies, where 'bi,cio->bco' makes XLA:CPU copy it into per-column pieces every
  step (fc6's 2 x 37.7 MB forward and backward; bench/RESULTS.md). Elsewhere as it always was.
  """
  if not _on_cpu():
    return (jnp.einsum('bi,cio->bco', x, kernel) + bias).reshape(x.shape[0], -1)
  columns = kernel.shape[0]
  y = jnp.einsum('cbi,cio->cbo', jnp.broadcast_to(x, (columns,) + x.shape), kernel)
  return (y + bias[:, None, :]).transpose(1, 0, 2).reshape(x.shape[0], -1)


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


def add_bias(y, bias):
  """y [..., C] + bias [C]; on CPU with the bias gradient computed as above."""
  return _add_bias(y, bias) if _on_cpu() else y + bias


def conv_layer(cfg, layer: ConvLayer, kernel, bias, x):
  """One conv layer of every column (kernel [C, kh, kw, in, out], bias [C, out]), before its
  activation: the implementation `cfg.conv_impl` / `cfg.conv1_impl` choose."""
  columns = kernel.shape[0]
  if layer.name == 'conv1':
    padding = conv1_padding(cfg)
  else:
    padding = ((layer.padding, layer.padding),) * 2
  if layer.both_columns:
    merged = _merged_kernel(kernel)
    impl = 'conv' if cfg.conv1_impl == 'auto' else cfg.conv1_impl
    if layer.name == 'conv1' and impl == 'im2col':
      y = _conv_im2col(x, merged, layer.stride, padding)
    else:
      y = _conv(x, merged, layer.stride, padding)
  else:
    impl = cfg.conv_impl
    if impl == 'auto':
      impl = 'split' if _on_cpu() else 'grouped'
    if columns == 1:
      y = _conv(x, kernel[0], layer.stride, padding)
    elif impl == 'grouped':
      y = _conv(x, _merged_kernel(kernel), layer.stride, padding, groups=columns)
    else:
      per = x.shape[-1] // columns
      y = jnp.concatenate(
          [_conv(x[..., c * per:(c + 1) * per], kernel[c], layer.stride, padding)
           for c in range(columns)], axis=-1)
  return add_bias(y, bias.reshape(-1))


class AlexNet(nnx.Module):
  """The paper's two-column net (or a variant) built from `config.model`."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    cfg = ml_collections.FrozenConfigDict(cfg)
    self.cfg = cfg
    convs, dense = architecture(cfg)
    self.conv_layers = convs
    self.dense_layers = dense
    columns = cfg.columns
    self.columns = columns
    in_per_column = 3
    in_total = 3
    for layer in convs:
      out = scaled(layer.features, cfg.width)
      cin = in_total if layer.both_columns else in_per_column
      std = _init_std(cfg, layer.name, layer.kernel * layer.kernel * cin)
      bias = cfg.bias_init if layer.bias_one else 0.0
      setattr(self, layer.name, ColumnConv(columns, cin, out, layer.kernel, std, bias, rngs=rngs))
      in_per_column, in_total = out, out * columns
    size = self.feature_map_sizes()[-1]
    in_total = size * size * in_total
    for layer in dense:
      out = cfg.num_classes // columns if layer.features == 0 else scaled(layer.features,
                                                                          cfg.width)
      std = _init_std(cfg, layer.name, in_total)
      bias = cfg.bias_init if layer.bias_one else 0.0
      setattr(self, layer.name, ColumnDense(columns, in_total, out, std, bias, rngs=rngs))
      in_total = out * columns

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

  # ------------------------------------------------------------------ forward pieces
  def _activation(self, x):
    return jax.nn.relu(x) if self.cfg.activation == 'relu' else jnp.tanh(x)

  def _lrn(self, x, columns):
    cfg = self.cfg
    shape = x.shape
    x = x.reshape(shape[:-1] + (columns, shape[-1] // columns))  # each column on its own
    x = local_response_norm(x, size=cfg.lrn_size, k=cfg.lrn_k, alpha=cfg.lrn_alpha,
                            beta=cfg.lrn_beta, alpha_convention=cfg.lrn_alpha_convention)
    return x.reshape(shape)

  def _pool(self, x):
    window = 3 if self.cfg.overlap_pool else 2
    if _on_cpu():  # the same numbers; XLA:CPU's own max-pool gradient is several times slower
      return pooling.max_pool(x, window, 2)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, 2, 2, 1),
                                 'VALID')

  def _conv_layer(self, layer: ConvLayer, x, dtype):
    module = getattr(self, layer.name)
    return conv_layer(self.cfg, layer, module.kernel[...].astype(dtype),
                      module.bias[...].astype(dtype), x)

  def _dropout(self, x, layer_index, columns, train, dropout_key, column_axis, data_axis=None):
    rate = self.cfg.dropout
    if rate == 0.0:
      return x
    keep = 1.0 - rate
    if not train:
      return x * keep if self.cfg.dropout_mode == 'paper' else x
    if dropout_key is None:
      raise ValueError('Training with dropout needs a dropout_key.')
    key = jax.random.fold_in(dropout_key, layer_index)
    first = 0 if column_axis is None else jax.lax.axis_index(column_axis) * columns
    per = x.shape[-1] // columns
    batch = x.shape[0]
    shards = 1 if data_axis is None else jax.lax.axis_size(data_axis)
    shape = (batch * shards,) + x.shape[1:-1] + (per,)

    # One mask per column, keyed by the column's global index, drawn for the GLOBAL batch (this
    # shard keeps its own rows): the masks do not depend on how columns or examples are spread
    # over devices, so every mesh computes the same numbers.
    def mask_of(c):
      mask = jax.random.bernoulli(jax.random.fold_in(key, first + c), keep, shape)
      if data_axis is None:
        return mask
      return jax.lax.dynamic_slice_in_dim(mask, jax.lax.axis_index(data_axis) * batch, batch)

    masks = [mask_of(c) for c in range(columns)]
    mask = jnp.concatenate(masks, axis=-1) if columns > 1 else masks[0]
    x = jnp.where(mask, x, jnp.zeros((), x.dtype))
    return x / keep if self.cfg.dropout_mode == 'inverted' else x

  def __call__(self, images: jax.Array, *, train: bool = False,
               dropout_key: jax.Array | None = None, column_axis: str | None = None,
               data_axis: str | None = None,
               capture: dict[str, Any] | None = None) -> jax.Array:
    """Logits [batch, num_classes] (float32) for NHWC `images`.

    train: dropout masks (with `dropout_key`) rather than the test-time scaling.
    column_axis: the mesh axis that holds the columns, when called inside `jax.shard_map`.
    data_axis: the mesh axis the batch is split over, inside `jax.shard_map`; only dropout needs
      it (its masks are drawn for the global batch, so they do not depend on the split).
    capture: if given, receives each layer's output by name ('conv1', 'pool1', ..., 'fc8'),
      for the summary.
    """
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)

    def gather(x, to='varying'):  # every column's channels, in column order
      if column_axis is None:
        return x
      return jax.lax.all_gather(x, column_axis, axis=x.ndim - 1, tiled=True, to=to)

    x = images.astype(dtype)
    for layer in self.conv_layers:
      columns = getattr(self, layer.name).kernel.shape[0]
      if layer.both_columns and layer.name != 'conv1':
        x = gather(x)
      x = self._conv_layer(layer, x, dtype)
      if capture is not None:
        capture[layer.name] = x
      use_lrn = cfg.lrn and layer.lrn
      if use_lrn and cfg.lrn_placement == 'code' and layer.name == 'conv1':
        x = self._activation(self._pool(self._lrn(x, columns)))
      else:
        x = self._activation(x)
        if use_lrn:
          x = self._lrn(x, columns)
        if layer.pool:
          x = self._pool(x)
      if capture is not None and layer.pool:
        capture['pool' + layer.name[-1]] = x
    for index, layer in enumerate(self.dense_layers):
      module = getattr(self, layer.name)
      columns = module.kernel.shape[0]
      if layer.dropout == 'input':  # on this device's columns, before they are gathered
        x = self._dropout(x, index, columns, train, dropout_key, column_axis, data_axis)
      x = gather(x)
      if index == 0:
        # fc6 sees both columns: gather pool5's channels BEFORE flattening, so that its input
        # is ordered (h, w, every column's channels) on every mesh, as on one device.
        x = x.reshape(x.shape[0], -1)
      x = dense_layer(x, module.kernel[...].astype(dtype), module.bias[...].astype(dtype))
      if layer.name != self.dense_layers[-1].name:
        x = self._activation(x)
      if layer.dropout == 'output':
        x = self._dropout(x, index, columns, train, dropout_key, column_axis, data_axis)
      if capture is not None:
        capture[layer.name] = x
    # fc8's outputs are split between the columns: the softmax needs them all. Gathered as
    # 'invarying' (the same logits on both devices), so the backward pass needs no exchange here:
    # each column takes its own slice of the logits' gradient.
    x = gather(x, to='invarying')
    return x.astype(jnp.float32)


def _init_std(cfg, name: str, fan_in: int) -> float:
  if cfg.init == 'he':
    return cfg.weight_std if name == 'fc8' else math.sqrt(2.0 / fan_in)
  if cfg.init == 'code' and name in ('conv3', 'conv4', 'conv5'):
    return cfg.conv345_std
  return cfg.weight_std


def create_model(cfg, seed: int = 0) -> AlexNet:
  return AlexNet(cfg, rngs=nnx.Rngs(params=seed))


def count_parameters(model: nnx.Module) -> int:
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
