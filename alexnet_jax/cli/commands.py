"""What main.py hands off to: one function per --mode, with early, readable failures.

A failure a user can fix (a bad config, a damaged or misplaced workdir, a damaged checkpoint,
a missing dataset) ends the process with one line that says what is wrong and what to do, and
no traceback; `--verbosity=1` adds the traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback

from alexnet_jax import config_schema


def workdir_problem(workdir: str) -> str | None:
  """Why `workdir` cannot be a run's folder (a file, or under a file), or None if it can."""
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    return (f'--workdir={workdir} is a file, not a folder: pass a folder (a new one starts a '
            'new run). Nothing was changed.')
  parent = os.path.dirname(path)
  while not os.path.exists(parent) and os.path.dirname(parent) != parent:
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    return (f'--workdir={workdir} is under {parent}, which is a file, not a folder: pass a '
            'path whose parents are folders. Nothing was changed.')
  return None


def run(config, *, mode: str, workdir: str | None, **kwargs) -> int:
  """Runs `mode`; returns the exit status (errors the user can fix exit with one line).

  Ctrl-C: training saves first (alexnet_jax/train/interrupts.py: the handler is installed
  here, so that a Ctrl-C during start-up is seen too); any other mode, which has nothing to
  save, stops with one line. Either way the status is 130.
  """
  watching = contextlib.nullcontext()
  if mode == 'train':
    from alexnet_jax.train import interrupts
    watching = interrupts.watch(os.path.join(workdir, 'checkpoints') if workdir else None)
  try:
    with watching:
      return _run(config, mode=mode, workdir=workdir, **kwargs)
  except KeyboardInterrupt:
    print(f'Interrupted: --mode={mode} stopped before it finished (what it writes is written '
          'whole or not at all); run the same command again.', file=sys.stderr, flush=True)
    return 130


def _run(config, *, mode: str, workdir: str | None, argv: list[str],
         distributed: dict | None = None, images: list[str] | None = None,
         output: str | None = None, search_images: int = 0, topology: str | None = None,
         show_traceback: bool = False) -> int:
  try:
    config_schema.check(config)  # every choice, once, before anything is read or compiled
  except config_schema.ConfigError as e:
    sys.exit(f'Bad config: {e}')
  if mode == 'summary':
    from alexnet_jax.model import summary
    print(summary.summarize(config.model, config.batch_size))
    return 0
  if mode == 'compile':
    return _compile(config, topology)
  if workdir is None:
    sys.exit(f'--mode={mode} needs --workdir=DIR (where checkpoints and metrics go).')
  if mode == 'predict' and not images:
    sys.exit('--mode=predict needs --image=FILE [FILE ...].')
  problem = workdir_problem(workdir)
  if problem:
    sys.exit(problem)
  from alexnet_jax import parallel
  from alexnet_jax.record import checkpoint
  from alexnet_jax.record import fileio
  from alexnet_jax.train import loop as train
  from alexnet_jax.record import tracking
  from alexnet_jax.data import pipeline
  from alexnet_jax.data.prepare import prepare as data_prepare
  try:
    if mode in ('train', 'eval'):  # predict and figures run in one process, on one device
      parallel.initialize_distributed(**(distributed or {}))
    if mode == 'train':
      # Training reads data, never makes it: what is quick to make (the mini ImageNet on first
      # use, small datasets' squares and stats) is made here, once, whoever asks (processes and
      # jobs on one data dir wait for each other); ILSVRC-2012 is only checked.
      data_prepare.prepare(config.data)
    return _run_mode(config, mode, workdir, argv, images, output, search_images)
  except fileio.WriteFailed as e:  # a full disk: the path, the last checkpoint, what to do
    if show_traceback:
      traceback.print_exc()
    if mode != 'train':
      sys.exit(checkpoint.write_failed_message(e, None))
    print(checkpoint.write_failed_message(e, os.path.join(workdir, 'checkpoints')),
          file=sys.stderr, flush=True)
    # Not through the interpreter's shutdown, where the failed save's threads (orbax's) would
    # still be failing, each with a traceback. Everything written is whole, as after a kill.
    sys.stdout.flush()
    os._exit(1)  # pylint: disable=protected-access
  except (pipeline.DatasetError, parallel.LayoutError, tracking.WorkdirError,
          train.TrainingError, checkpoint.CheckpointError, OSError) as e:
    # LayoutError also from the cluster's environment (SLURM without srun, ...). OSError: a
    # disk that is full or a folder that may not be written, named by the error.
    if show_traceback:
      traceback.print_exc()
    sys.exit(f'{type(e).__name__}: {e}')


def _compile(config, topology: str | None) -> int:
  """--mode=compile: ahead of time, no data, no workdir; one line when it does not fit."""
  from alexnet_jax import parallel
  from alexnet_jax.tools import compile as compile_lib
  try:
    compile_lib.run(config, topology)
  except (compile_lib.CompileError, parallel.LayoutError) as e:
    sys.exit(f'{type(e).__name__}: {e}')
  return 0


def _run_mode(config, mode, workdir, argv, images, output, search_images) -> int:
  from alexnet_jax.train import loop as train
  if mode == 'train':
    train.train_and_evaluate(config, workdir, argv)
  elif mode == 'predict':
    from alexnet_jax.tools import predict
    return predict.run(config, workdir, images, output)
  elif mode == 'figures':
    from alexnet_jax.tools import paper_figures
    record = paper_figures.make_figures(config, workdir, search_images)
    colour = ', '.join(f'{v:.2f}' for v in record['figure3']['colour_measure_per_column'])
    print(f'Wrote Figures 3 and 4 of step {record["step"]} to {workdir}/figures/ '
          f'(conv1 colour measure per column: {colour}).')
  else:
    from alexnet_jax.tools import ensemble
    if ensemble.is_run(workdir):  # one workdir
      results = train.evaluate_checkpoint(config, workdir)
      if output:
        _write_results(output, {f'{views}_view': r for views, r in results.items()})
    else:  # several, or a folder of runs: each member and the ensemble
      ensemble.evaluate_ensemble(config, ensemble.expand_workdirs(workdir), output)
  return 0


def _write_results(path: str, results: dict) -> None:
  from alexnet_jax.record import fileio
  from alexnet_jax import parallel
  if parallel.is_main_process():
    fileio.write_json_atomic(path, results, indent=2)
