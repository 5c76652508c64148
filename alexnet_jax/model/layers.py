"""The paper's layer tables, what a model config may say, and what follows from it.

PAPER.md's table (and torchvision's one_weird_trick net) as data: each conv and fc layer's
width, kernel, stride, padding, which columns it sees, its initial bias, and whether LRN,
pooling or dropout follow. `validate` refuses configs that cannot be built, saying what to
change; `conv1_padding`, `scaled` and `init_std` turn the config into sizes and initial scales.
Nothing here computes on arrays: the NNX module (alexnet.py) builds the net from these tables,
and kernels.py holds how each layer runs.
"""

from __future__ import annotations

import dataclasses
import math

VARIANTS = ('paper', 'one_weird_trick')
# Whose kernels the model runs (kernels.py): 'auto' is the default backend at construction.
PLATFORMS = ('auto', 'cpu', 'gpu', 'tpu')


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
  validate(cfg)
  if cfg.variant == 'one_weird_trick':
    return _one_weird_trick_layers()
  return _paper_layers(cfg.columns)


def validate(cfg) -> None:
  """Fails early, with what to change, on model configs that cannot be built."""
  if cfg.variant not in VARIANTS:
    raise ValueError(f'model.variant={cfg.variant!r}; use one of {VARIANTS}.')
  if cfg.columns not in (1, 2):
    raise ValueError(f'model.columns={cfg.columns}; the paper net has 2 columns (or 1, its '
                     'one-GPU ablation).')
  if cfg.variant == 'one_weird_trick' and cfg.columns != 1:
    raise ValueError('model.variant=one_weird_trick is a single-column net: set '
                     'model.columns=1.')
  if cfg.num_classes % cfg.columns:
    raise ValueError(
        f'model.num_classes={cfg.num_classes} must divide evenly between the '
        f'{cfg.columns} columns (each column computes its share of fc8); use model.columns=1.')
  if cfg.activation not in ('relu', 'tanh'):
    raise ValueError(f"model.activation={cfg.activation!r}; use 'relu' or 'tanh'.")
  if cfg.lrn_placement not in ('paper', 'code'):
    raise ValueError(f"model.lrn_placement={cfg.lrn_placement!r}; use 'paper' or 'code'.")
  if cfg.dropout_mode not in ('paper', 'inverted'):
    raise ValueError(f"model.dropout_mode={cfg.dropout_mode!r}; use 'paper' or 'inverted'.")
  if not 0.0 <= cfg.dropout < 1.0:
    raise ValueError(f'model.dropout={cfg.dropout}; a rate in [0, 1).')
  if cfg.init not in ('paper', 'code', 'he'):
    raise ValueError(f"model.init={cfg.init!r}; use 'paper', 'code' or 'he'.")
  for field in ('conv_impl', 'conv1_impl'):
    allowed = ('auto', 'split', 'grouped') if field == 'conv_impl' else ('auto', 'conv', 'im2col')
    if cfg[field] not in allowed:
      raise ValueError(f'model.{field}={cfg[field]!r}; use one of {allowed}.')
  platform = cfg.get('platform', 'auto')
  if platform not in PLATFORMS:
    raise ValueError(f'model.platform={platform!r}; use one of {PLATFORMS}.')
  if cfg.dtype not in ('float32', 'bfloat16'):
    raise ValueError(f"model.dtype={cfg.dtype!r}; use 'float32' or 'bfloat16'.")
  if cfg.width <= 0:
    raise ValueError(f'model.width={cfg.width}; a positive multiplier.')
  if cfg.input_size < 63:
    raise ValueError(f'model.input_size={cfg.input_size} leaves no feature map after conv5; '
                     'use 224 (paper), 227 (Caffe) or at least 63.')


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


def layer_padding(cfg, layer: ConvLayer) -> tuple[tuple[int, int], tuple[int, int]]:
  """A conv layer's (top, bottom), (left, right) zero padding."""
  if layer.name == 'conv1':
    return conv1_padding(cfg)
  return ((layer.padding, layer.padding),) * 2


def scaled(features: int, width: float) -> int:
  return max(1, int(round(features * width)))


def init_std(cfg, name: str, fan_in: int) -> float:
  """The standard deviation of layer `name`'s initial weights under `cfg.init`."""
  if cfg.init == 'he':
    return cfg.weight_std if name == 'fc8' else math.sqrt(2.0 / fan_in)
  if cfg.init == 'code' and name in ('conv3', 'conv4', 'conv5'):
    return cfg.conv345_std
  return cfg.weight_std
