"""The command layer's one-line failures: a bad config before anything runs, and a cluster
environment that cannot start (a LayoutError from distributed initialization)."""

import os
import subprocess
import sys

import pytest

from alexnet_jax.cli import commands
from configs.alexnet import get_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _exit_message(config, **kwargs) -> str:
  with pytest.raises(SystemExit) as exit_:
    commands.run(config, argv=['main.py'], **{'mode': 'summary', 'workdir': None, **kwargs})
  return exit_.value.code


def test_a_bad_config_stops_before_anything_runs(tmp_path):
  config = get_config('quickstart')
  config.model.activation = 'gelu'
  assert _exit_message(config) == "Bad config: model.activation='gelu'; use 'relu' or 'tanh'."
  config = get_config('one_weird_trick')
  config.model.columns = 2
  workdir = tmp_path / 'run'
  assert _exit_message(config, mode='train', workdir=str(workdir)) == (
      'Bad config: model.variant=one_weird_trick is a single-column net: set model.columns=1.')
  config = get_config()
  config.eval.final_views = (1, 5)
  assert _exit_message(config, mode='eval', workdir=str(workdir)) == (
      'Bad config: eval.final_views=(1, 5); each item: use 1 (the centre crop) or 10 (the '
      'corners and centre, mirrored).')
  assert not workdir.exists()


def test_a_slurm_job_without_srun_fails_with_one_line(tmp_path):
  # Two tasks, but not started by srun: SLURM's step variables are missing. main.py must say so
  # on one line (parallel.distributed_args names srun), not with a traceback.
  env = {k: v for k, v in os.environ.items() if not k.startswith('SLURM_')}
  env.update(SLURM_JOB_ID='42', SLURM_NTASKS='2')
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/alexnet.py', '--mode=train',
       f'--workdir={workdir}'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith('LayoutError: SLURM_NTASKS=2 but SLURM_STEP_NODELIST')
  assert 'srun' in lines[0]
  assert not workdir.exists()  # nothing was written
