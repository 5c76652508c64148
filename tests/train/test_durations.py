"""Every epoch/step pair of the config resolved by one rule, against hand-computed steps."""

import ml_collections

from alexnet_jax.train import durations
from configs.alexnet import get_config


def _group(**fields):
  return ml_collections.ConfigDict(fields)


def test_the_runs_length_rounds_up():
  assert durations.steps(_group(num_epochs=90.0, num_steps=0), 'num', 10009) == 900810
  assert durations.steps(_group(num_epochs=2.5, num_steps=0), 'num', 5) == 13  # 12.5 up
  assert durations.steps(_group(num_epochs=0.01, num_steps=0), 'num', 10) == 1  # 0.1 up
  assert durations.steps(_group(num_epochs=90.0, num_steps=7), 'num', 5) == 7  # steps win


def test_points_in_the_run_round_to_the_nearest_step():
  assert durations.steps(_group(every_epochs=1.0, every_steps=0), 'every', 42) == 42
  assert durations.steps(_group(every_epochs=0.4, every_steps=0), 'every', 7) == 3  # 2.8
  assert durations.steps(_group(every_epochs=0.3, every_steps=0), 'every', 7) == 2  # 2.1
  assert durations.steps(_group(every_epochs=0.0, every_steps=0), 'every', 7) == 0  # the end
  assert durations.steps(_group(every_epochs=5.0, every_steps=6), 'every', 7) == 6
  assert durations.steps(_group(warmup_epochs=1.2, warmup_steps=0), 'warmup', 10) == 12
  assert durations.steps(_group(warmup_epochs=0.0, warmup_steps=100), 'warmup', 10) == 100


def test_sequences_convert_item_by_item():
  group = _group(boundaries_epochs=(25, 51, 79), boundaries_steps=())
  assert durations.steps(group, 'boundaries', 10) == [250, 510, 790]
  # Python's round: a tie goes to the even step (12.5 -> 12, 17.5 -> 18).
  assert durations.steps(_group(boundaries_epochs=(2.5, 3.5), boundaries_steps=()), 'boundaries',
                         5) == [12, 18]
  group = _group(boundaries_epochs=(), boundaries_steps=(5, 9))
  assert durations.steps(group, 'boundaries', 10) == [5, 9]
  assert durations.steps(_group(boundaries_epochs=(), boundaries_steps=()), 'boundaries', 10) == []


def test_the_quickstarts_durations():
  # 2,700 training images (90% of 3,000) in batches of 64: 42 steps an epoch.
  config = get_config('quickstart')
  assert durations.steps(config, 'num', 42) == 1050            # 25 epochs
  assert durations.steps(config.eval, 'every', 42) == 210      # every 5 epochs
  assert durations.steps(config.schedule, 'warmup', 42) == 100
