"""Trained nets out of workdirs, for the research tools (ensembles, predictions, figures).

`restore` loads a workdir's latest checkpoint into a `train_setup.plan` (the net and the dataset sized
exactly as training sizes them), refusing a workdir whose model differs from the config's;
`single_device` is the config the predict and figures tools run with (one device, no mesh
communication, so the forward pass can hand back inner layers).
"""

from __future__ import annotations

import dataclasses
import os

import jax
from flax import nnx

from alexnet_jax.record import checkpoint as checkpoint_lib
from alexnet_jax.data import device_preprocess
from alexnet_jax.record import tracking
from alexnet_jax.train import setup as train_setup


@dataclasses.dataclass
class Restored:
  workdir: str
  step: int
  params: object


def single_device(config):
  """A copy of `config` that runs on one device (the whole net on it)."""
  config = config.copy_and_resolve_references()
  config.mesh.model = 1
  config.mesh.data = 1
  return config


def restore(config, workdir: str, setup: train_setup.Setup) -> Restored:
  """The latest checkpoint of `workdir` (a corrupt one is set aside for the one before it)."""
  tracking.check_model_config(workdir, config)
  ckpt = checkpoint_lib.Checkpoints(os.path.join(workdir, 'checkpoints'),
                                    keep=config.checkpoint.keep,
                                    keep_best=config.checkpoint.keep_best, async_save=False)
  try:
    restored = ckpt.restore_latest(setup.abstract_state)
  finally:
    ckpt.close()
  if restored is None:
    raise train_setup.TrainingError(f'No checkpoint in {ckpt.directory}: train first (--mode=train).')
  step, state, _ = restored
  return Restored(workdir=os.path.abspath(workdir), step=int(step), params=state['params'])


def make_forward(setup: train_setup.Setup, feature_layer: str = 'fc7'):
  """jit(params, uint8 crops [B, S, S, 3]) -> (probabilities [B, classes], `feature_layer`'s
  activations [B, F]), test-time dropout; for a single-device setup. The crops become the net's
  input on the device with the dataset's transform (mean, scale), as in the eval step."""
  graphdef, transform = setup.graphdef, setup.info.transform

  @jax.jit
  def forward(params, images):
    capture = {}
    inputs = device_preprocess.eval_inputs(images, transform)
    logits = nnx.merge(graphdef, params)(inputs, train=False, capture=capture)
    return jax.nn.softmax(logits, axis=-1), capture[feature_layer]

  return forward
