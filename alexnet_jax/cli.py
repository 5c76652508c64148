"""What main.py hands off to: one function per --mode, with early, readable failures."""

from __future__ import annotations

import sys

from alexnet_jax import model as model_lib


def run(config, *, mode: str, workdir: str | None, argv: list[str],
        distributed: dict | None = None) -> None:
  try:
    model_lib.validate(config.model)
  except ValueError as e:
    sys.exit(f'Bad config: {e}')
  if mode == 'summary':
    from alexnet_jax import summary
    print(summary.summarize(config.model, config.batch_size))
    return
  if workdir is None:
    sys.exit(f'--mode={mode} needs --workdir=DIR (where checkpoints and metrics go).')
  from alexnet_jax import parallel
  parallel.initialize_distributed(**(distributed or {}))
  from alexnet_jax import train
  from alexnet_jax import tracking
  from alexnet_jax.data import pipeline
  try:
    if mode == 'train':
      train.train_and_evaluate(config, workdir, argv)
    else:
      train.evaluate_checkpoint(config, workdir)
  except (pipeline.DatasetError, parallel.LayoutError, tracking.WorkdirError,
          train.TrainingError) as e:
    sys.exit(f'{type(e).__name__}: {e}')
