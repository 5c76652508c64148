"""The paper's layer tables, what a model config may say, and what follows from it.

PAPER.md's table (and torchvision's one_weird_trick net) as data: each conv and fc layer's
width, kernel, stride, padding, which columns it sees, its initial bias, and whether LRN,
pooling or dropout follow. A config that cannot be built is refused by the config schema
(alexnet_jax/config_schema.py), saying what to change; `conv1_padding`, `scaled` and `init_std` turn the config into sizes and initial scales.
Nothing here computes on arrays: the NNX module (alexnet.py) builds the net from these tables,
and kernels.py holds how each layer runs.
"""

from __future__ import annotations

import dataclasses
import math

from alexnet_jax import config_schema



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
