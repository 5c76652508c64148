"""A trained net out of a workdir, for evaluation: its newest good checkpoint's parameters.

--mode=eval (loop.evaluate_checkpoint), ensembles, predictions and figures all restore through
`latest`. It refuses a workdir whose run trained another model than the config's, and, like a
resumed run, sets a damaged checkpoint aside for the one before it. Training itself resumes the
whole state (loop.py), not only the parameters.
"""

from __future__ import annotations

import dataclasses
import os

from alexnet_jax.record import checkpoint as checkpoint_lib
from alexnet_jax.record import tracking
from alexnet_jax.train import steps as steps_lib
from alexnet_jax.train.setup import TrainingError


@dataclasses.dataclass(frozen=True)
class Restored:
  workdir: str  # absolute
  step: int
  params: object  # laid out on `steps.mesh`


def latest(config, workdir: str, steps: steps_lib.Steps) -> Restored:
  """The parameters of `workdir`'s newest good checkpoint, on `steps`' mesh."""
  tracking.check_model_config(workdir, config)
  ckpt = checkpoint_lib.Checkpoints(os.path.join(workdir, 'checkpoints'),
                                    keep=config.checkpoint.keep,
                                    keep_best=config.checkpoint.keep_best, async_save=False)
  try:
    restored = ckpt.restore_latest(steps.abstract_state)
  finally:
    ckpt.close()
  if restored is None:
    raise TrainingError(f'No checkpoint in {ckpt.directory}: train first (--mode=train).')
  step, state, _ = restored
  return Restored(workdir=os.path.abspath(workdir), step=int(step), params=state['params'])
