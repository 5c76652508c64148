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
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

log = logging.getLogger(__name__)


class _QuietPeriodicSaves(logging.Filter):
  """Periodic saves carry no validation error by design (only evaluated ones do); orbax warns
  about each of them, which would interleave with the progress lines."""

  def filter(self, record):
    return 'did not provide metrics' not in str(record.msg)


logging.getLogger('absl').addFilter(_QuietPeriodicSaves())


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
        # best_fn makes orbax write each checkpoint's metrics next to it, so the best one is
        # still known (and kept) after a restart; the preservation policy decides what stays.
        best_fn=lambda m: m['val_error'], best_mode='min',
        preservation_policy=policies.AnyPreservationPolicy(preserve),
        cleanup_tmp_directories=True,
        create=True)
    # Handlers named up front, so that a new process can read a checkpoint's metadata before
    # it has saved or restored anything.
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'record': ocp.JsonCheckpointHandler()})

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, record: dict, metrics: dict | None = None,
           force: bool = False) -> None:
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    record=ocp.args.JsonSave(record)),
                      metrics=metrics, force=force)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore_latest(self, abstract_state):
    """(step, state, record) of the newest checkpoint that restores, or None if there is none.

    A checkpoint that fails to restore (corrupt or half-written files) is skipped, with a
    warning naming it, for the one before it; it is moved aside to `N.corrupt`, not deleted.
    A readable checkpoint whose arrays do not fit `abstract_state` (saved by another model or
    optimizer config) is not corrupt: that raises CheckpointError and moves nothing.
    """
    for step in reversed(self.steps()):
      path = os.path.join(self.directory, str(step))
      try:
        saved = self.manager.item_metadata(step)['state'].tree
      except Exception:  # unreadable metadata: the restore below decides whether it is corrupt
        saved = None
      mismatch = saved is not None and _mismatch(abstract_state, saved)
      if mismatch:
        raise CheckpointError(
            f'Checkpoint {path} was saved by a different model or optimizer config:\n  '
            + '\n  '.join(mismatch[:10]) + '\nRun with the config it was saved with (the '
            "workdir's config.json), or use a new --workdir. Nothing was changed.")
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), record=ocp.args.JsonRestore()))
        return step, restored['state'], restored['record']
      except Exception as e:  # orbax raises many types for damaged files
        self._set_aside(path, e)
    return None

  def _set_aside(self, path: str, error: Exception) -> None:
    log.warning('Checkpoint %s could not be restored (%s: %s); falling back to the one '
                'before it.', path, type(error).__name__, str(error).splitlines()[0][:200])
    if jax.process_index() == 0:
      print(f'WARNING: checkpoint {path} is corrupt or incomplete ({type(error).__name__}); '
            f'moved to {path}.corrupt, using the one before it.', flush=True)
      shutil.move(path, path + '.corrupt')
    if jax.process_count() > 1:  # every process reloads after the move
      multihost_utils.sync_global_devices(f'checkpoint_set_aside_{os.path.basename(path)}')
    self.manager.reload()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _leaves(tree) -> dict[str, tuple]:
  def name(path):
    return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
                    for k in path)
  return {name(p): (tuple(leaf.shape), str(leaf.dtype))
          for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _mismatch(abstract_state, saved_metadata) -> list[str]:
  """What differs between the arrays a run expects and those a checkpoint holds."""
  want, have = _leaves(abstract_state), _leaves(saved_metadata)
  out = [f'{k}: saved {have[k][0]} {have[k][1]}, expected {want[k][0]} {want[k][1]}'
         for k in want if k in have and have[k] != want[k]]
  out += [f'{k}: not in the checkpoint' for k in want if k not in have]
  out += [f'{k}: in the checkpoint, not expected' for k in have if k not in want]
  return out
