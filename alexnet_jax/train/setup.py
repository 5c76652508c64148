"""A run's setup, decided before any compilation: the dataset's size, the run's length and the
steps built for its mesh (steps.py).

Training, --mode=eval and the research tools that restore a trained net all start from `plan`;
it imports neither the loop (loop.py) nor the tools.
"""

from __future__ import annotations

import dataclasses

from alexnet_jax import parallel
from alexnet_jax.train import durations
from alexnet_jax.train import optim
from alexnet_jax.train import steps as steps_lib


class TrainingError(RuntimeError):
  pass


@dataclasses.dataclass
class Setup:
  """Everything a run needs that is decided before any compilation."""
  steps: steps_lib.Steps
  info: object  # the prepared dataset: sizes, classes, its input transform
  steps_per_epoch: int
  total_steps: int


def plan(config) -> Setup:
  """Checks the layout and the dataset and sizes the run; fails before compiling anything.
  Makes no data: the dataset must be there (the training command makes what is quick to make
  before it plans)."""
  from alexnet_jax.data import pipeline
  mesh = parallel.make_mesh(config.mesh, config.model)
  parallel.check_batch(mesh, config.batch_size)
  # `info.dataset` is what the iterators read; `info.transform` what the device does to the
  # uint8 crops.
  info = pipeline.dataset_info(config.data, image_size=config.model.input_size)
  if info.num_classes > config.model.num_classes:
    raise TrainingError(
        f'The dataset has {info.num_classes} classes but model.num_classes is '
        f'{config.model.num_classes}; set --config.model.num_classes={info.num_classes}.')
  steps_per_epoch = max(1, info.num_train // config.batch_size)
  total = durations.steps(config, 'num', steps_per_epoch)
  return Setup(steps_lib.build(config, info.transform), info, steps_per_epoch, total)
