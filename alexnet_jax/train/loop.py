"""The training loop: restore or start, the steps, the metric window, evaluations and their
checkpoints, the preemption save, the final evaluation; and --mode=eval.

Resume is "run the same command again": the loop restores the workdir's latest complete
checkpoint (parameters, optimizer state, step, RNG, schedule state); the data position is the
step, because the input pipeline's batch is a function of (seed, step).

The host never waits for a step it has just dispatched: the next step is dispatched before the
previous one's loss is fetched and checked (`_Window.hand_over`), so the host's work overlaps
the device's; anything that needs the step in flight (a logged row, an evaluation, a save)
settles it first.
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax import figures
from alexnet_jax import parallel
from alexnet_jax.record import checkpoint as checkpoint_lib
from alexnet_jax.record import tracking
from alexnet_jax.record.progress import Progress
from alexnet_jax.train import durations
from alexnet_jax.train import evaluate as evaluate_lib
from alexnet_jax.train import interrupts
from alexnet_jax.train import optim
from alexnet_jax.train import restore
from alexnet_jax.train import setup as setup_lib
from alexnet_jax.train.setup import Setup, TrainingError


class _Preempted(Exception):
  """Raised once the save of `step` asked for by a signal is made."""

  def __init__(self, step: int):
    super().__init__(step)
    self.step = step


class _LossNotFinite(Exception):
  pass


def _preemption_requested(interrupted: interrupts.Interrupts, step: int, log_every: int) -> bool:
  """Whether to save and stop after `step` (SIGTERM or Ctrl-C). Several processes agree on it
  at logging steps (the save is collective); one process acts on it at once."""
  if jax.process_count() > 1 and step % log_every:
    return False
  return _any_process(interrupted.requested)


def _any_process(flag: bool) -> bool:
  """True if `flag` is set on any process (every process must call this at the same step)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils
  return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def _print(message: str) -> None:
  if parallel.is_main_process():
    print(message, flush=True)


class _Run:
  """What a training run writes to and keeps: its record (metrics.jsonl, TensorBoard), its
  checkpoints and the learning-rate schedule saved with them."""

  def __init__(self, config, workdir: str, argv: list[str], setup: Setup):
    self.config, self.setup = config, setup
    self.schedule = optim.Schedule(config.schedule, config.optimizer.learning_rate,
                                   setup.steps_per_epoch, setup.total_steps)
    self.record = tracking.Workdir(workdir, config, argv)
    self.ckpt = checkpoint_lib.Checkpoints(os.path.join(workdir, 'checkpoints'),
                                           keep=config.checkpoint.keep,
                                           keep_best=config.checkpoint.keep_best,
                                           async_save=config.checkpoint.async_save)
    self.eval_every = durations.steps(config.eval, 'every', setup.steps_per_epoch)

  def epoch(self, step: int) -> float:
    return step / self.setup.steps_per_epoch

  def save(self, step: int, state, metrics: dict | None = None, force: bool = False) -> None:
    """Checkpoints `state` (asynchronously) with the schedule's state.

    The loss guards each step; the save guards what is saved (an update can overflow after a
    finite loss): a state that is not finite stops the run. Checked here, not in the step, so
    the step needs no extra communication.
    """
    try:
      self.ckpt.save(step, state, {'step': step, 'schedule': self.schedule.state.to_dict()},
                     metrics=metrics, force=force)
    except checkpoint_lib.NotFiniteError as e:
      raise self.stopped(f'The state after step {step} is {e} (not saved)') from e

  def stopped(self, what: str) -> TrainingError:
    """The error that stops a run gone bad, once the checkpoints being written are done."""
    self.ckpt.wait()
    steps = self.ckpt.steps()
    return TrainingError(
        f'{what}: training stopped. The last good checkpoint (step '
        f'{steps[-1] if steps else "none"}) is kept; lower the learning rate or check the data.')

  def close(self) -> None:
    self.ckpt.close()
    self.record.close()


class _Window:
  """The training metrics of the steps since the last logged row, and the step in flight.

  `hand_over` keeps a dispatched step's metrics without fetching them; they are fetched and
  checked (which waits for that step) at the next hand-over, or at `settle`.
  """

  def __init__(self, batch_size: int):
    self.batch_size = batch_size
    self.in_flight = None  # (step, metrics) of the step dispatched last, not yet checked
    self.reset()

  def reset(self) -> None:
    self.loss = self.top1 = self.examples = 0.0
    self.steps = self.images = 0
    self.start = time.time()

  def hand_over(self, step: int, metrics: dict) -> None:
    """Checks the step before (the device already runs `step`), keeps `step`'s metrics."""
    self.settle()
    self.in_flight = (step, metrics)
    self.images += self.batch_size

  def restart_clock(self) -> None:
    """Times the window from the end of the step in flight (the first one compiles)."""
    self.settle()
    self.start = time.time()
    self.images = 0

  @contextlib.contextmanager
  def paused(self):
    """Leaves out of the window's time what runs inside (images/s counts training only)."""
    paused_at = time.time()
    yield
    self.start += time.time() - paused_at

  def settle(self) -> None:
    """Fetches and checks the step in flight; _LossNotFinite if its loss is NaN or infinite."""
    if self.in_flight is None:
      return
    step, metrics = self.in_flight
    loss = float(metrics['loss'])
    if not math.isfinite(loss):
      # Steps are counted from 1 here, as in metrics.jsonl and the checkpoints (step N = after
      # N updates).
      raise _LossNotFinite(f'Loss is {loss} at step {step + 1}')
    self.in_flight = None
    self.loss += loss
    self.top1 += float(metrics['top1'])
    self.examples += float(metrics['count'])
    self.steps += 1

  def row(self, epoch: float, learning_rate: float) -> dict:
    """The logged row of the (settled) window."""
    elapsed = time.time() - self.start
    return {'epoch': epoch, 'loss': self.loss / self.steps, 'learning_rate': learning_rate,
            'train_top1_error': 100.0 * (1 - self.top1 / max(self.examples, 1.0)),
            'images_per_sec': self.images / max(elapsed, 1e-9), 'wall_time': time.time()}


def train_and_evaluate(config, workdir: str, argv: list[str]) -> dict:
  """Trains (resuming from `workdir`), evaluates, and returns the final validation metrics."""
  setup = setup_lib.plan(config)
  run = _Run(config, workdir, argv, setup)
  start, state, finished = _restore_or_init(run)
  if finished is not None:
    run.close()
    _print(f'{workdir} holds a finished run (step {start}); its results are in '
           'metrics.jsonl. Evaluate it again with --mode=eval, or train on in a new workdir.')
    return finished
  with interrupts.watch(run.ckpt.directory) as interrupted:
    if _any_process(interrupted.requested):  # during start-up: nothing new to save
      run.close()
      interrupted.exit_before_training()
    try:
      state = _train(run, state, start, interrupted)
    except _Preempted as preempted:
      run.close()
      interrupted.exit_saved(preempted.step)
    except _LossNotFinite as e:
      raise run.stopped(str(e)) from None
    end = max(start, setup.total_steps)
    final = _final_evaluation(run, state, end)
    if start < setup.total_steps or run.ckpt.steps()[-1:] != [end]:
      run.save(end, state, {'val_error': final.get('val_top1_error', math.inf)}, force=True)
    run.close()
    if interrupted.requested:  # during the final evaluation: the run finished first
      interrupted.exit_finished(end)
  return final


def _restore_or_init(run: _Run) -> tuple[int, dict, dict | None]:
  """(step, state, final metrics if the run is finished): the newest checkpoint that passes its
  integrity check (damaged ones are moved aside; if none is good this stops, CheckpointError,
  rather than start over unasked), or step 0 and a new state."""
  restored = run.ckpt.restore_latest(run.setup.steps.abstract_state)
  if restored is None:
    state = run.setup.steps.init_state()
    # Rows of an earlier start that left no checkpoint are kept aside, not mixed with these.
    run.record.start_over()
    return 0, state, None
  start, state, saved = restored
  run.schedule.state = optim.PlateauState(**saved['schedule'])
  finished = run.record.final_row(start)
  if start >= run.setup.total_steps and finished is not None:
    return start, state, {k: v for k, v in finished.items() if k.startswith('val_')}
  run.record.truncate_after(start)
  _print(f'Resumed from step {start} ({run.ckpt.directory}).')
  return start, state, None


def _train(run: _Run, state, start: int, interrupted: interrupts.Interrupts):
  """Steps from `start` to the end of the run; returns the last state. _Preempted once saved,
  if a signal asked to stop."""
  config, setup = run.config, run.setup
  batches = _train_batches(config, setup, start)
  progress = Progress(config.progress, setup.total_steps, setup.steps_per_epoch, start)
  window = _Window(config.batch_size)
  for step in range(start, setup.total_steps):
    batch = next(batches)
    lr = run.schedule(step)
    state, metrics = setup.steps.train_step(state, batch, jnp.float32(lr), jnp.int32(step))
    window.hand_over(step, metrics)  # checks the step before, while this one runs
    if step == start:
      window.restart_clock()  # the first step compiles: time the windows from its end
    _after_step(run, window, progress, interrupted, state, step + 1, lr)
  window.settle()
  progress.close()
  return state


def _after_step(run: _Run, window: _Window, progress: Progress,
                interrupted: interrupts.Interrupts, state, step: int, lr: float) -> None:
  """The host's work once `step` updates are made: log, evaluate, checkpoint, or preemption."""
  config, total = run.config, run.setup.total_steps
  log = step % config.log_every_steps == 0 or step == total
  evaluate = bool(run.eval_every) and step % run.eval_every == 0 and step < total
  periodic_save = step % config.checkpoint.every_steps == 0 and step < total
  if log or evaluate or periodic_save:
    window.settle()  # each needs the step in flight: its metrics, its state known good
  if log:
    row = window.row(run.epoch(step), lr)
    run.record.log(step, row)
    progress.update(step, row)
    window.reset()
  evaluation = None
  if evaluate:
    with window.paused():
      evaluation = _evaluate(run, state, step, progress)
  if _preemption_requested(interrupted, step, config.log_every_steps):
    window.settle()
    run.save(step, state, evaluation and {'val_error': evaluation['top1_error']}, force=True)
    progress.close()  # the bar ends before the line that says what was saved
    raise _Preempted(step)
  if evaluation is not None:
    # A checkpoint at every evaluation, carrying its error: the best one can be kept.
    run.save(step, state, {'val_error': evaluation['top1_error']}, force=True)
  elif periodic_save:
    run.save(step, state)


def _evaluate(run: _Run, state, step: int, progress: Progress) -> dict:
  """The evaluation during training: logged, with conv1's kernels, and fed to the schedule."""
  result = run_evaluation(run.config, run.setup, state['params'], run.config.eval.views)
  if run.schedule.observe(result['top1_error']):
    progress.note(f'Validation error stopped improving: learning rate now '
                  f'{run.schedule(step):g}.')
  run.record.log(step, {'epoch': run.epoch(step), 'val_top1_error': result['top1_error'],
                        'val_top5_error': result['top5_error'], 'wall_time': time.time()})
  run.record.log_images(step, {'conv1': figures.conv1_grid_image(state['params'])})
  progress.note(f"step {step}: validation top-1 error {result['top1_error']:.2f}%, "
                f"top-5 {result['top5_error']:.2f}%")
  return result


def _final_evaluation(run: _Run, state, step: int) -> dict:
  """Every view count of `eval.final_views`, printed and logged with the config (TensorBoard's
  hyperparameters); returns the final metrics."""
  final = {}
  for views in run.config.eval.final_views:
    result = run_evaluation(run.config, run.setup, state['params'], views)
    suffix = '' if views == 1 else f'_{views}view'
    final[f'val_top1_error{suffix}'] = result['top1_error']
    final[f'val_top5_error{suffix}'] = result['top5_error']
    _print(f'Final validation ({views} view{"s" if views > 1 else ""}, {result["count"]} '
           f'examples): top-1 error {result["top1_error"]:.2f}%, top-5 error '
           f'{result["top5_error"]:.2f}%')
  run.record.log(step, {'epoch': run.epoch(step), **final, 'wall_time': time.time()})
  run.record.log_images(step, {'conv1': figures.conv1_grid_image(state['params'])})
  run.record.log_hparams(run.config)
  return final


def _train_batches(config, setup: Setup, start: int):
  """This process's training batches from step `start`, as global arrays on the mesh."""
  from alexnet_jax.data import pipeline
  mesh = setup.steps.mesh
  shard = parallel.data_shard(mesh, config.batch_size)
  return _on_device_ahead(mesh, pipeline.train_iterator(
      setup.info.dataset, image_size=config.model.input_size, global_batch_size=config.batch_size,
      seed=config.seed, start_step=start, process_index=shard.index,
      process_count=shard.count, weights=True))


def _on_device_ahead(mesh, batches):
  """The batches as global arrays, each put on the devices one step ahead: the next batch's
  transfer is started before the current one is handed out, so it overlaps the step."""
  upcoming = parallel.global_batch(mesh, next(batches))
  while True:
    current, upcoming = upcoming, parallel.global_batch(mesh, next(batches))
    yield current


def run_evaluation(config, setup: Setup, params, views: int) -> dict:
  """The validation split at `views` crops per example: errors in percent and the count."""
  from alexnet_jax.data import pipeline
  mesh = setup.steps.mesh
  batch_size = config.eval.batch_size or config.batch_size
  shard = parallel.data_shard(mesh, batch_size)
  batches = pipeline.eval_iterator(
      setup.info.dataset, image_size=config.model.input_size, global_batch_size=batch_size,
      views=views, process_index=shard.index, process_count=shard.count)
  result = evaluate_lib.evaluate(setup.steps.eval_step, params, batches,
                                 lambda b: parallel.global_batch(mesh, b))
  if result['count'] != setup.info.num_eval:
    raise TrainingError(f'Evaluation counted {result["count"]} examples, the split has '
                        f'{setup.info.num_eval}.')
  return result


def evaluate_checkpoint(config, workdir: str) -> dict:
  """--mode=eval: the workdir's latest checkpoint on the validation split, every view count."""
  setup = setup_lib.plan(config)
  net = restore.latest(config, workdir, setup.steps)
  results = {}
  for views in config.eval.final_views:
    r = run_evaluation(config, setup, net.params, views)
    results[views] = r
    _print(f'step {net.step}, {views} view(s), {r["count"]} examples: top-1 error '
           f'{r["top1_error"]:.2f}%, top-5 error {r["top5_error"]:.2f}%')
  return results
