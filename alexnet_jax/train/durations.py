"""Durations the config gives in epochs or in steps, as steps: one rule for every pair.

A pair is `<name>_epochs` / `<name>_steps` in one config group: the run's length
(config.num_epochs / num_steps), the evaluation interval (eval.every_epochs / every_steps), the
schedule's warm-up (schedule.warmup_epochs / warmup_steps) and its boundaries
(schedule.boundaries_epochs / boundaries_steps, sequences). The steps field wins when it is set
(> 0, or not empty); otherwise the epochs are converted with the run's steps per epoch, rounded to
the nearest step, except the run's length, which rounds up (a run never stops short of
num_epochs). The schedule's pairs take one field or the other (alexnet_jax/config_schema.py).
"""

from __future__ import annotations

import math

# The pairs whose epochs round up rather than to the nearest step.
_ROUND_UP = ('num',)


def steps(group, name: str, steps_per_epoch: int):
  """`group.<name>_steps` if set, else `group.<name>_epochs` in steps (a list for sequences).

  steps(config, 'num', 100) -> the run's total steps; steps(config.eval, 'every', 100) -> the
  steps between evaluations; steps(config.schedule, 'boundaries', 100) -> [2500, 5100, 7900].
  """
  given = group.get(f'{name}_steps')
  if given:
    return [int(s) for s in given] if isinstance(given, (tuple, list)) else int(given)
  epochs = group[f'{name}_epochs']
  to_steps = math.ceil if name in _ROUND_UP else round
  if isinstance(epochs, (tuple, list)):
    return [int(to_steps(e * steps_per_epoch)) for e in epochs]
  return int(to_steps((epochs or 0) * steps_per_epoch))
