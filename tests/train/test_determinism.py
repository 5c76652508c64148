"""Run-to-run determinism as the README claims it: the same command on the same machine and
jaxlib gives the same losses, step for step.

Two fresh runs of one tiny config (the tiny net of test_train.py, a few steps, no evaluation)
in this process, each in a new workdir with its own state, data pipeline and jitted step; their
metrics.jsonl must hold the same losses, bit for bit. In one process JAX may hand the second run
the executable it compiled for the first; separate processes, each compiling its own, agree as
well: test_train.py's resume tests compare a killed process's first steps with another's. (Kept
in one process to stay fast: compiling dominates a run this small.)
"""

import json
import os

from alexnet_jax.data.prepare import prepare
from alexnet_jax.train import loop
from configs.alexnet import get_config

STEPS = 4


def _config(data_dir: str):
  config = get_config('quickstart')
  config.data.data_dir = data_dir
  config.data.mini.images_per_class = 6
  config.data.resize_size = 72
  config.data.shuffle_buffer = 16
  config.model.input_size = 67
  config.model.width = 0.125
  config.batch_size = 8
  config.num_steps = STEPS
  config.log_every_steps = 1
  config.eval.every_steps = 0
  config.eval.every_epochs = 0
  config.eval.final_views = ()
  config.checkpoint.every_steps = STEPS
  config.schedule.name = 'constant'
  config.progress = 'none'
  return config


def _losses(workdir: str) -> dict[int, float]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return {r['step']: r['loss'] for r in rows if 'loss' in r}


def test_two_runs_of_one_command_give_the_same_losses(tmp_path):
  data_dir = str(tmp_path / 'data')
  losses = []
  for name in ('first', 'second'):
    config = _config(data_dir)
    prepare.prepare(config.data, log=lambda *_: None)  # as the training command does first
    loop.train_and_evaluate(config, str(tmp_path / name), argv=[])
    losses.append(_losses(str(tmp_path / name)))
  assert sorted(losses[0]) == list(range(1, STEPS + 1))
  assert len(set(losses[0].values())) == STEPS  # the net trains: every step's loss differs
  assert losses[1] == losses[0]  # exactly equal, not close
