"""Trained nets for the research tools that run on one device (predictions, figures).

`single_device` is the config these tools run with (one device, no mesh communication, so the
forward pass can hand back inner layers); `make_forward` is that forward pass. The parameters
come from `alexnet_jax.train.restore.latest`, as for every evaluation.
"""

from __future__ import annotations

import jax
from flax import nnx

from alexnet_jax.data import device_preprocess
from alexnet_jax.train import steps as steps_lib


def single_device(config):
  """A copy of `config` that runs on one device (the whole net on it)."""
  config = config.copy_and_resolve_references()
  config.mesh.model = 1
  config.mesh.data = 1
  return config


def make_forward(steps: steps_lib.Steps, feature_layer: str = 'fc7'):
  """jit(params, uint8 crops [B, S, S, 3]) -> (probabilities [B, classes], `feature_layer`'s
  activations [B, F]), test-time dropout; for the steps of a `single_device` config. The crops
  become the net's input on the device with the steps' transform (mean, scale), as in the eval
  step."""
  graphdef, transform = steps.graphdef, steps.transform

  @jax.jit
  def forward(params, images):
    capture = {}
    inputs = device_preprocess.eval_inputs(images, transform)
    logits = nnx.merge(graphdef, params)(inputs, train=False, capture=capture)
    return jax.nn.softmax(logits, axis=-1), capture[feature_layer]

  return forward
