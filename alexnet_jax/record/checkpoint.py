"""Orbax checkpoints of a whole run: asynchronous saves, last K + best kept, resume, fall back.

A checkpoint holds the train state pytree (parameters, optimizer state, step, RNG key data) and
a JSON record (step, schedule state, validation metrics, a checksum of every array). The data
position is the step: the input pipeline's batch is a function of (seed, step), so nothing else
is needed to resume.

Integrity. Orbax 0.12.8 has no checksum of the array bytes: no save option or handler offers
one (its zarr3 layout, not the default used here, checksums only the index of each shard), and
bytes flipped inside an array restore without a word (tests/test_checkpoint.py shows it). So
each save stores a 64-bit checksum of every array in the record (computed on the devices,
before the asynchronous write), and each
restore recomputes it and checks that the whole state (parameters and optimizer state) is
finite. A checkpoint that fails is moved aside to `N.corrupt`, with a warning, for the one
before it; a state that is not finite is never saved.

A save that cannot be written (a full disk) raises fileio.WriteFailed naming the checkpoint,
and `write_failed_message` is the one line that ends the command: that path, the last good
checkpoint, what to do.
"""

from __future__ import annotations

import logging
import os
import shutil
import weakref

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from alexnet_jax.record import fileio
from alexnet_jax.record import orbax_noise

log = logging.getLogger(__name__)


orbax_noise.install()  # orbax's and tensorstore's noise around a save, off the terminal


class CheckpointError(RuntimeError):
  pass


class NotFiniteError(CheckpointError):
  """The state to save holds a NaN or Inf (in the arrays named by `leaves`); nothing was saved."""

  def __init__(self, leaves: list[str]):
    shown = ', '.join(leaves[:5]) + (f' and {len(leaves) - 5} more' if len(leaves) > 5 else '')
    super().__init__(f'not finite: {shown}')
    self.leaves = leaves


def _uint32_words(x: jax.Array) -> jax.Array:
  """The bits of `x` as uint32 words (one per element; two per 8-byte element)."""
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  size = jnp.dtype(x.dtype).itemsize
  if size == 8:
    return jax.lax.bitcast_convert_type(x, jnp.uint32)  # adds a trailing axis of 2
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]
  return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _fmix32(h: jax.Array) -> jax.Array:
  """MurmurHash3's finalizer: a bijection of uint32 that spreads every input bit."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def _add_add_and(a, b):
  return a[0] + b[0], a[1] + b[1], a[2] & b[2]


def _summarize(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(uint32[2] checksum, whether all of `x` is finite), in one pass over `x`.

  The checksum is two uint32 sums over the words w_i of `x` at flat positions i (wrapping):

    sum w_i * (2i + 1)                   changes with any change of one word (odd factors), and
    sum fmix32(w_i ^ (i * 0x9E3779B9))   with any other damage but with odds of 2^-32 (the
                                         first alone misses, e.g., two flipped sign bits).

  Sums of integers do not depend on the order of addition, so the checksum is the same for any
  sharding of `x` (checkpoints move between meshes). Both sums and the finiteness test are one
  variadic reduction: as three separate reductions XLA:CPU took 23 times longer on the paper
  net's state (bench/RESULTS.md).
  """
  x = x.reshape(1) if x.ndim == 0 else x
  words = _uint32_words(x)
  position = jnp.zeros(words.shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(words.ndim)):
    position = position + jax.lax.broadcasted_iota(jnp.uint32, words.shape, axis) * jnp.uint32(
        stride % 2**32)
    stride *= words.shape[axis]
  weighted = words * (position * jnp.uint32(2) + jnp.uint32(1))
  mixed = _fmix32(words ^ (position * jnp.uint32(0x9E3779B9)))
  if jnp.issubdtype(x.dtype, jnp.inexact):
    finite = jnp.isfinite(x).astype(jnp.uint32)
    finite = jnp.broadcast_to(finite.reshape(finite.shape + (1,) * (words.ndim - x.ndim)),
                              words.shape)
  else:
    finite = jnp.ones(words.shape, jnp.uint32)
  zero = jnp.uint32(0)
  a, b, ok = jax.lax.reduce((weighted, mixed, finite), (zero, zero, jnp.uint32(1)),
                            _add_add_and, tuple(range(words.ndim)))
  return jnp.stack([a, b]), ok.astype(bool)


@jax.jit
def _inspect(state) -> tuple[jax.Array, jax.Array]:
  """([leaves, 2] uint32 checksums, [leaves] finite flags) of `state`'s arrays."""
  summaries = [_summarize(x) for x in jax.tree.leaves(state)]
  return jnp.stack([s for s, _ in summaries]), jnp.stack([ok for _, ok in summaries])


def inspect_state(state) -> tuple[dict[str, str], list[str]]:
  """({array name: 16-hex-digit checksum}, names of the arrays that are not finite)."""
  names = list(_leaves(state))
  sums, finite = jax.device_get(_inspect(state))
  checksums = {name: f'{int(a):08x}{int(b):08x}' for name, (a, b) in zip(names, sums)}
  return checksums, [name for name, ok in zip(names, finite) if not ok]


_OPEN = weakref.WeakSet()  # the Checkpoints of this process not closed yet


def last_committed(directory: str, wait: bool = True) -> int | None:
  """The newest step whose checkpoint is complete in `directory` (None if none), once the saves
  this process has in flight are finished or failed (unless not `wait`).

  Orbax writes a checkpoint into `N.orbax-checkpoint-tmp*` and renames it to `N` when it is
  complete, so a folder named by a number is a committed checkpoint (its integrity is checked
  when it is restored).
  """
  for checkpoints in list(_OPEN) if wait else []:
    try:
      checkpoints.manager.wait_until_finished()
    except Exception:  # pylint: disable=broad-except  (its failure is being reported)
      pass
  steps = [int(name) for name in _listing(directory)
           if name.isdigit() and os.path.isdir(os.path.join(directory, name))]
  return max(steps) if steps else None


def _listing(directory: str) -> list[str]:
  try:
    return os.listdir(directory)
  except OSError:
    return []


def write_failed_message(error: fileio.WriteFailed, directory: str | None) -> str:
  """The one line that ends a command stopped by `error`: what could not be written, the last
  good checkpoint in `directory` (a training run's; None for other commands), what to do."""
  if directory is None:
    return f'{error}. {error.remedy}, then run the same command again.'
  step = last_committed(directory)
  if step is None:
    return (f'{error}. Nothing written before is damaged; no checkpoint was saved yet. '
            f'{error.remedy}, then run the same command to start again.')
  return (f'{error}. Nothing written before is damaged; the last good checkpoint is step '
          f'{step} ({directory}). {error.remedy}, then run the same command to resume from it.')


class Checkpoints:
  """Saves every N steps (asynchronously) and keeps the last `keep` plus the best by error.

  A save that cannot be written (a full disk; with asynchronous saves this shows at the next
  save, `wait` or `close`) raises fileio.WriteFailed naming the checkpoint's folder; orbax
  leaves its unfinished `N.orbax-checkpoint-tmp*` folder, which the next start removes, and
  every committed checkpoint stays as it was.
  """

  def __init__(self, directory: str, *, keep: int, keep_best: int, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self._saving = self.directory  # the folder of the save in flight, for naming its failure
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
    _set_aside_unreadable_metrics(self.directory)
    # Handlers named up front, so that a new process can read a checkpoint's metadata before
    # it has saved or restored anything.
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'record': ocp.JsonCheckpointHandler()})
    _OPEN.add(self)

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, record: dict, metrics: dict | None = None,
           force: bool = False) -> None:
    """Saves `state` with `record` and the checksum of every array (asynchronously).

    NotFiniteError, saving nothing, if any array holds a NaN or Inf: such a state would fail
    the check at restore anyway, and would hide the last good checkpoint behind a bad one.
    """
    checksums, not_finite = inspect_state(state)
    if not_finite:
      raise NotFiniteError(not_finite)
    self.wait()  # orbax waits for the save before anyway; a failure of it names its own step
    self._saving = os.path.join(self.directory, str(step))
    with fileio.writing(self._saving):
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          record=ocp.args.JsonSave({**record, 'checksums': checksums})),
          metrics=metrics, force=force)

  def wait(self) -> None:
    """Waits for the save in flight; fileio.WriteFailed if it could not be written."""
    with fileio.writing(self._saving):
      self.manager.wait_until_finished()

  def restore_latest(self, abstract_state):
    """(step, state, record) of the newest good checkpoint, or None if there is none at all.

    A checkpoint that fails to restore (corrupt or half-written files), whose arrays do not
    match the checksums saved with them, or whose state is not finite is moved aside to
    `N.corrupt` (not deleted), with a warning naming it, for the one before it. If every
    checkpoint fails, CheckpointError: starting over silently would hide the damage.
    A readable checkpoint whose arrays do not fit `abstract_state` (saved by another model or
    optimizer config) is not corrupt: that raises CheckpointError and moves nothing.
    The returned record holds what was saved with the state, without the checksums.
    """
    set_aside = []
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
      except Exception as e:  # orbax raises many types for damaged files
        self._set_aside(path, f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'
                        if str(e) else type(e).__name__)
        set_aside.append(path)
        continue
      state, record = restored['state'], dict(restored['record'])
      problem = verify(state, record.pop('checksums', None))
      if problem:
        self._set_aside(path, problem)
        set_aside.append(path)
        continue
      return step, state, record
    if set_aside:
      raise CheckpointError(
          f'No checkpoint in {self.directory} is good: {", ".join(set_aside)} failed the check '
          'and were moved aside (to N.corrupt); nothing else was changed. Training with the '
          'same command again starts this run over from step 0 (its metrics so far are kept '
          'aside); or use a new --workdir.')
    return None

  def _set_aside(self, path: str, problem: str) -> None:
    if jax.process_index() == 0:
      _move_aside(path, problem)
    if jax.process_count() > 1:  # every process reloads after the move
      multihost_utils.sync_global_devices(f'checkpoint_set_aside_{os.path.basename(path)}')
    self.manager.reload()

  def close(self) -> None:
    self.wait()
    self.manager.close()
    _OPEN.discard(self)


def _move_aside(path: str, problem: str) -> None:
  log.info('Checkpoint %s is damaged (%s); falling back to the one before it.', path, problem)
  print(f'WARNING: checkpoint {path} is damaged ({problem}); moved it to {path}.corrupt, '
        'falling back to the one before it.', flush=True)
  shutil.move(path, path + '.corrupt')


def _set_aside_unreadable_metrics(directory: str) -> None:
  """Moves aside checkpoints whose validation-metrics file (orbax's, read for every checkpoint
  when the manager starts) is not JSON: orbax would refuse to open the whole folder."""
  if jax.process_index() == 0 and os.path.isdir(directory):
    for name in sorted(os.listdir(directory)):
      path = os.path.join(directory, name)
      metrics = os.path.join(path, 'metrics', 'metrics')
      if name.isdigit() and os.path.isfile(metrics):
        try:
          fileio.read_json(metrics)
        except fileio.DamagedFile as e:
          _move_aside(path, f'its metrics file {e.problem}')
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('checkpoint_metrics_checked')


def verify(state, checksums: dict[str, str] | None) -> str | None:
  """What is wrong with a restored `state` (None if nothing): arrays that differ from their
  saved checksums, or that are not finite. Checkpoints saved before checksums were stored
  (`checksums` None) get the finiteness check only."""
  actual, not_finite = inspect_state(state)
  if checksums is not None:
    differ = sorted(name for name, value in actual.items() if checksums.get(name) != value)
    if differ:
      return (f'{len(differ)} array(s) differ from the checksums saved with them: '
              + ', '.join(differ[:5]))
  if not_finite:
    return f'{len(not_finite)} array(s) not finite: ' + ', '.join(not_finite[:5])
  return None


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
