"""The training loop: state, jitted steps, evaluation cadence, checkpoints, metrics, guards.

Resume is "run the same command again": the loop restores the workdir's latest complete
checkpoint (parameters, optimizer state, step, RNG, schedule state); the data position is the
step, because the input pipeline's batch is a function of (seed, step).
"""

from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from alexnet_jax.record import checkpoint as checkpoint_lib
from alexnet_jax.train import evaluate as evaluate_lib
from alexnet_jax.train import interrupts
from alexnet_jax import figures
from alexnet_jax.train import optim
from alexnet_jax.train import setup as setup_lib
from alexnet_jax.train.setup import Setup, TrainingError
from alexnet_jax import parallel
from alexnet_jax.record import tracking
from alexnet_jax.record.progress import Progress


def _to_global(mesh, batch):
  return parallel.global_batch(mesh, batch)


def _on_device_ahead(mesh, batches):
  """The batches as global arrays, each put on the devices one step ahead: the next batch's
  transfer is started before the current one is handed out, so it overlaps the step."""
  upcoming = _to_global(mesh, next(batches))
  while True:
    current, upcoming = upcoming, _to_global(mesh, next(batches))
    yield current


def run_evaluation(config, setup: Setup, eval_step, params, views: int) -> dict:
  from alexnet_jax.data import pipeline
  batch_size = config.eval.batch_size or config.batch_size
  shard = parallel.data_shard(setup.mesh, batch_size)
  batches = pipeline.eval_iterator(
      config.data, image_size=config.model.input_size, global_batch_size=batch_size,
      views=views, process_index=shard.index, process_count=shard.count)
  result = evaluate_lib.evaluate(eval_step, params, batches,
                                 lambda b: _to_global(setup.mesh, b))
  if result['count'] != setup.info.num_eval:
    raise TrainingError(f'Evaluation counted {result["count"]} examples, the split has '
                        f'{setup.info.num_eval}.')
  return result


def _print(message: str) -> None:
  if parallel.is_main_process():
    print(message, flush=True)


def _any_process(flag: bool) -> bool:
  """True if `flag` is set on any process (every process must call this at the same step)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils
  return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def train_and_evaluate(config, workdir: str, argv: list[str]) -> dict:
  """Trains (resuming from `workdir`), evaluates, and returns the final validation metrics."""
  from alexnet_jax.data import pipeline
  setup = setup_lib.plan(config)
  schedule = optim.Schedule(config.schedule, config.optimizer.learning_rate,
                            setup.steps_per_epoch, setup.total_steps)
  record = tracking.Workdir(workdir, config, argv)
  ckpt = checkpoint_lib.Checkpoints(os.path.join(workdir, 'checkpoints'),
                                    keep=config.checkpoint.keep,
                                    keep_best=config.checkpoint.keep_best,
                                    async_save=config.checkpoint.async_save)
  # The newest checkpoint that passes its integrity check; damaged ones are moved aside, and
  # if none is good this stops (CheckpointError) rather than start over unasked.
  restored = ckpt.restore_latest(setup.abstract_state)
  if restored is None:
    _, state = setup_lib.init_state(config)
    state = jax.device_put(state, setup.shardings)
    start = 0
    # Rows of an earlier start that left no checkpoint are kept aside, not mixed with these.
    record.start_over()
  else:
    start, state, saved = restored
    schedule.state = optim.PlateauState(**saved['schedule'])
    finished = record.final_row(start)
    if start >= setup.total_steps and finished is not None:
      ckpt.close()
      record.close()
      _print(f'{workdir} holds a finished run (step {start}); its results are in '
             'metrics.jsonl. Evaluate it again with --mode=eval, or train on in a new workdir.')
      return {k: v for k, v in finished.items() if k.startswith('val_')}
    record.truncate_after(start)
    _print(f'Resumed from step {start} ({ckpt.directory}).')

  train_step = setup_lib.make_train_step(config, setup.mesh, setup.graphdef, setup.shardings,
                               setup.info.transform)
  logits_fn = parallel.make_logits_fn(setup.graphdef, setup.mesh, config.model)
  eval_step = evaluate_lib.make_eval_step(logits_fn, setup.info.transform)
  eval_every = config.eval.every_steps or int(round(config.eval.every_epochs
                                                    * setup.steps_per_epoch))
  shard = parallel.data_shard(setup.mesh, config.batch_size)
  batches = _on_device_ahead(setup.mesh, pipeline.train_iterator(
      config.data, image_size=config.model.input_size, global_batch_size=config.batch_size,
      seed=config.seed, start_step=start, process_index=shard.index,
      process_count=shard.count, weights=True))

  def stop(what):
    ckpt.wait()
    raise TrainingError(
        f'{what}: training stopped. The last good checkpoint (step '
        f'{ckpt.steps()[-1] if ckpt.steps() else "none"}) is kept; lower the learning rate or '
        'check the data.')

  def save(step, metrics=None, force=False):
    # The loss guards each step; the save guards what is saved (an update can overflow after a
    # finite loss): it refuses a state that is not finite. Checked there, not in the step, so
    # the step needs no extra communication.
    try:
      ckpt.save(step, state, {'step': step, 'schedule': schedule.state.to_dict()},
                metrics=metrics, force=force)
    except checkpoint_lib.NotFiniteError as e:
      stop(f'The state after step {step} is {e} (not saved)')

  progress = Progress(config.progress, setup.total_steps, setup.steps_per_epoch, start)
  window = {'loss': 0.0, 'top1': 0.0, 'examples': 0.0, 'count': 0, 'images': 0,
            'time': time.time()}
  last_eval = {}
  pending = None  # (step, metrics) of the step before: checked while the next one runs
  step = start

  def check(pending):
    step_done, metrics = pending
    loss = float(metrics['loss'])
    if not math.isfinite(loss):
      # Steps are counted from 1 here, as in metrics.jsonl and the checkpoints (step N = after
      # N updates).
      stop(f'Loss is {loss} at step {step_done + 1}')
    window['loss'] += loss
    window['top1'] += float(metrics['top1'])
    window['examples'] += float(metrics['count'])
    window['count'] += 1
    return loss

  def settle():  # checks the step in flight (its loss is fetched, so this waits for it)
    nonlocal pending
    if pending is not None:
      check(pending)
      pending = None

  with interrupts.watch(ckpt.directory) as interrupted:
    if _any_process(interrupted.requested):  # during start-up: nothing new to save
      ckpt.close()
      record.close()
      interrupted.exit_before_training()
    while step < setup.total_steps:
      batch = next(batches)
      lr = schedule(step)
      state, metrics = train_step(state, batch, jnp.float32(lr), jnp.int32(step))
      settle()
      pending = (step, metrics)
      if step == start:  # the first step compiles: time the windows from its end
        settle()
        window['time'] = time.time()
        window['images'] = -config.batch_size
      step += 1
      window['images'] += config.batch_size
      if step % config.log_every_steps == 0 or step == setup.total_steps:
        settle()
        elapsed = time.time() - window['time']
        row = {'epoch': step / setup.steps_per_epoch, 'loss': window['loss'] / window['count'],
               'learning_rate': lr,
               'train_top1_error': 100.0 * (1 - window['top1'] / max(window['examples'], 1.0)),
               'images_per_sec': window['images'] / max(elapsed, 1e-9),
               'wall_time': time.time()}
        record.log(step, row)
        progress.update(step, row)
        window.update(loss=0.0, top1=0.0, examples=0.0, count=0, images=0, time=time.time())
      evaluated = False
      if eval_every and step % eval_every == 0 and step < setup.total_steps:
        settle()
        eval_start = time.time()
        last_eval = run_evaluation(config, setup, eval_step, state['params'],
                                   config.eval.views)
        evaluated = True
        if schedule.observe(last_eval['top1_error']):
          progress.note(f'Validation error stopped improving: learning rate now '
                        f'{schedule(step):g}.')
        record.log(step, {'epoch': step / setup.steps_per_epoch,
                          'val_top1_error': last_eval['top1_error'],
                          'val_top5_error': last_eval['top5_error'],
                          'wall_time': time.time()})
        record.log_images(step, {'conv1': figures.conv1_grid_image(state['params'])})
        progress.note(f"step {step}: validation top-1 error {last_eval['top1_error']:.2f}%, "
                      f"top-5 {last_eval['top5_error']:.2f}%")
        window['time'] += time.time() - eval_start  # images/s counts training time only
      # Several processes agree on an interrupt at logging steps (the save is collective);
      # one process acts on it at once.
      if (jax.process_count() == 1 or step % config.log_every_steps == 0) and _any_process(
          interrupted.requested):
        settle()
        save(step, {'val_error': last_eval['top1_error']} if evaluated else None, force=True)
        ckpt.close()
        record.close()
        progress.close()
        interrupted.exit_saved(step)
      if step < setup.total_steps and evaluated:
        # A checkpoint at every evaluation, carrying its error: the best one can be kept.
        settle()
        save(step, {'val_error': last_eval['top1_error']}, force=True)
      elif step % config.checkpoint.every_steps == 0 and step < setup.total_steps:
        settle()
        save(step)
    settle()
  progress.close()

  final = {}
  for views in config.eval.final_views:
    result = run_evaluation(config, setup, eval_step, state['params'], views)
    suffix = '' if views == 1 else f'_{views}view'
    final[f'val_top1_error{suffix}'] = result['top1_error']
    final[f'val_top5_error{suffix}'] = result['top5_error']
    _print(f'Final validation ({views} view{"s" if views > 1 else ""}, {result["count"]} '
           f'examples): top-1 error {result["top1_error"]:.2f}%, top-5 error '
           f'{result["top5_error"]:.2f}%')
  record.log(step, {'epoch': step / setup.steps_per_epoch, **final, 'wall_time': time.time()})
  record.log_images(step, {'conv1': figures.conv1_grid_image(state['params'])})
  if start < setup.total_steps or not ckpt.steps() or ckpt.steps()[-1] != step:
    save(step, {'val_error': final.get('val_top1_error', math.inf)}, force=True)
  ckpt.close()
  record.close()
  if interrupted.requested:  # during the final evaluation: the run finished first
    interrupted.exit_finished(step)
  return final


def evaluate_checkpoint(config, workdir: str) -> dict:
  """--mode=eval: the workdir's latest checkpoint on the validation split, every view count."""
  tracking.check_model_config(workdir, config)
  setup = setup_lib.plan(config)
  ckpt = checkpoint_lib.Checkpoints(os.path.join(workdir, 'checkpoints'), keep=config.checkpoint.keep,
                                    keep_best=config.checkpoint.keep_best, async_save=False)
  restored = ckpt.restore_latest(setup.abstract_state)
  if restored is None:
    raise TrainingError(f'No checkpoint in {ckpt.directory}: train first (--mode=train).')
  step, state, _ = restored
  logits_fn = parallel.make_logits_fn(setup.graphdef, setup.mesh, config.model)
  eval_step = evaluate_lib.make_eval_step(logits_fn, setup.info.transform)
  results = {}
  for views in config.eval.final_views:
    r = run_evaluation(config, setup, eval_step, state['params'], views)
    results[views] = r
    _print(f'step {step}, {views} view(s), {r["count"]} examples: top-1 error '
           f'{r["top1_error"]:.2f}%, top-5 error {r["top5_error"]:.2f}%')
  ckpt.close()
  return results
