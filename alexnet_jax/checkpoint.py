"""Orbax checkpoints of a whole run: asynchronous saves, last K + best kept, resume, fall back.

A checkpoint holds the train state pytree (parameters, optimizer state, step, RNG key data) and
a JSON record (step, schedule state, validation metrics). The data position is the step: the
input pipeline's batch is a function of (seed, step), so nothing else is needed to resume.
"""

from __future__ import annotations

import logging
import os
import shutil

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  pass


class Checkpoints:
  """Saves every N steps (asynchronously) and keeps the last `keep` plus the best by error."""

  def __init__(self, directory: str, *, keep: int, keep_best: int, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    preserve = [policies.LatestN(n=keep)]
    if keep_best:
      # Lower validation error is better (orbax ranks ascending and keeps the top, hence
      # reverse); checkpoints saved without metrics are kept by LatestN only.
      preserve.append(policies.BestN(get_metric_fn=lambda m: m['val_error'], reverse=True,
                                     n=keep_best, keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=async_save,
        preservation_policy=policies.AnyPreservationPolicy(preserve),
        cleanup_tmp_directories=True,
        create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, record: dict, metrics: dict | None = None,
           force: bool = False) -> None:
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    record=ocp.args.JsonSave(record)),
                      metrics=metrics, force=force)
    if os.environ.get('ALEXNET_JAX_KILL_DURING_SAVE') == str(step):
      # Fault injection for the resume tests: die while the asynchronous save is in flight.
      os.kill(os.getpid(), 9)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore_latest(self, abstract_state):
    """(step, state, record) of the newest checkpoint that restores, or None if there is none.

    A checkpoint that fails to restore (corrupt or half-written files) is skipped, with a
    warning naming it, for the one before it; it is moved aside, not deleted.
    """
    for step in reversed(self.steps()):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), record=ocp.args.JsonRestore()))
        return step, restored['state'], restored['record']
      except Exception as e:  # orbax raises many types for damaged files
        path = os.path.join(self.directory, str(step))
        log.warning('Checkpoint %s could not be restored (%s: %s); falling back to the one '
                    'before it.', path, type(e).__name__, str(e).splitlines()[0][:200])
        print(f'WARNING: checkpoint {path} is corrupt or incomplete '
              f'({type(e).__name__}); using the one before it.', flush=True)
        if jax.process_index() == 0:
          shutil.move(path, path + '.corrupt')
        self.manager.reload()
    return None

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
