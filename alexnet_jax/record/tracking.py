"""The workdir as the record of one experiment: config, command, code version, metrics.

    config.json      the resolved config (what `--config` and the overrides made)
    run.json         command line, git commit and whether the tree was dirty, per start
    metrics.jsonl    one JSON object per logged step or evaluation
    events.out.*     TensorBoard event files (via clu): the same metrics, conv1's kernels, and
                     at the end the config as hyperparameters (TensorBoard's HParams dashboard
                     at a sweep's root lists its runs side by side, with their final metrics)

Only process 0 writes; every file is replaced atomically or appended to, and a file that
cannot be read back stops the run with one line (WorkdirError) before anything is written.
A write that fails (a full disk) raises fileio.WriteFailed naming the file, TensorFlow's
errors of the TensorBoard writer included; an append that fails leaves metrics.jsonl whole.
A workdir that holds a run of a different config refuses a new one
unless `config.allow_config_change` is set, so results of two configs never mix.
"""

from __future__ import annotations

import glob
import json
import math
import os
import socket
import subprocess
import sys
import time

import jax

from alexnet_jax.record import fileio

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WorkdirError(RuntimeError):
  pass


# Config fields that do not change a run's results, so a workdir may resume under new values.
# model.platform picks kernels (the same numbers up to rounding, as a mesh does); older workdirs
# have none.
NOT_COMPARED = ('allow_config_change:', 'mesh.', 'progress:', 'model.platform:')


def git_state() -> dict:
  """Commit and dirtiness of the code that runs (None where it is not a git checkout)."""
  def git(*args):
    return subprocess.run(['git', *args], cwd=REPO, capture_output=True, text=True,
                          timeout=10)
  try:
    commit = git('rev-parse', 'HEAD')
    if commit.returncode:
      return {'commit': None, 'dirty': None}
    status = git('status', '--porcelain', '--untracked-files=no')
    return {'commit': commit.stdout.strip(), 'dirty': bool(status.stdout.strip())}
  except (OSError, subprocess.SubprocessError):
    return {'commit': None, 'dirty': None}


def _config_json(config) -> dict:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _diff(old: dict, new: dict, prefix: str = '') -> list[str]:
  keys = sorted(set(old) | set(new))
  out = []
  for k in keys:
    a, b = old.get(k, '<absent>'), new.get(k, '<absent>')
    if isinstance(a, dict) and isinstance(b, dict):
      out += _diff(a, b, f'{prefix}{k}.')
    elif a != b:
      out.append(f'{prefix}{k}: {a!r} -> {b!r}')
  return out


def flat_config(config) -> dict[str, bool | int | float | str]:
  """The resolved config as TensorBoard hyperparameters: dotted keys, scalar values (tuples and
  lists as their Python text, None as 'None')."""
  def flatten(tree: dict, prefix: str):
    for key, value in tree.items():
      if isinstance(value, dict):
        yield from flatten(value, f'{prefix}{key}.')
      elif isinstance(value, (bool, int, float, str)):
        yield f'{prefix}{key}', value
      else:
        yield f'{prefix}{key}', str(tuple(value) if isinstance(value, list) else value)
  return dict(flatten(_config_json(config), ''))


def _clean(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if hasattr(value, 'item'):
    return _clean(value.item())
  return value


# Fields of config.model that do not change the parameters: --mode=eval may set them freely.
MODEL_NOT_COMPARED = ('conv_impl', 'conv1_impl', 'dtype', 'platform')


def _damaged(error: fileio.DamagedFile, what_to_do: str) -> WorkdirError:
  return WorkdirError(f'{error}: {what_to_do} Nothing was changed.')


def read_config(workdir: str) -> dict | None:
  """The workdir's config.json (None if it has none); WorkdirError if it cannot be read."""
  path = os.path.join(os.path.abspath(workdir), 'config.json')
  try:
    return fileio.read_json(path)
  except FileNotFoundError:
    return None
  except fileio.DamagedFile as e:
    raise _damaged(e, 'it is the resolved config of the run in this workdir; put back a copy '
                   'of it, or delete it (the next training run writes it again from its '
                   'command line).') from e


def check_model_config(workdir: str, config) -> None:
  """WorkdirError unless `config.model` builds the net the workdir's run trained.

  For --mode=eval, which writes nothing: data and evaluation settings may differ (another
  split, 10 views), the model may not.
  """
  saved = read_config(workdir)
  if saved is None:
    raise WorkdirError(f'{workdir} holds no run (no config.json): train first, or point '
                       '--workdir at a run.')
  old = saved.get('model', {})
  new = _config_json(config)['model']
  changes = [c for c in _diff(old, new, 'model.')
             if not c.startswith(tuple(f'model.{k}:' for k in MODEL_NOT_COMPARED))]
  if changes:
    raise WorkdirError(f'{workdir} holds a run of another model:\n  ' + '\n  '.join(changes)
                       + '\nEvaluate it with the config it was trained with (its config.json).')


def _read_runs(path: str) -> list:
  """run.json's list of starts ([] if there is none); WorkdirError if it cannot be read."""
  problem = None
  try:
    runs = fileio.read_json(path)
    if not isinstance(runs, list):
      problem = fileio.DamagedFile(path, f'holds a JSON {type(runs).__name__}, not a list of '
                                   'starts')
  except FileNotFoundError:
    return []
  except fileio.DamagedFile as e:
    problem = e
  if problem is not None:
    raise _damaged(problem, 'it lists the command line of every start of this run; put back a '
                   'copy of it, or delete it (the next start begins a new list).')
  return runs


def _read_metrics(path: str) -> tuple[list[dict], str | None]:
  """(rows, torn last line) of metrics.jsonl; WorkdirError if a line before the last is damaged."""
  try:
    return fileio.read_jsonl(path)
  except FileNotFoundError:
    return [], None
  except fileio.DamagedFile as e:
    raise _damaged(e, 'only a kill during the last write can cut a line, so this is damage: '
                   'put back a copy of the file, or delete that line (a resumed run logs the '
                   'steps after its checkpoint again, not those before).') from e


class Workdir:
  """Writes the run record; `log` appends metrics to metrics.jsonl and TensorBoard.

  Every file is replaced atomically or appended to (alexnet_jax/record/fileio.py): a kill at any
  instant leaves the old or the new content. All three are read before anything is written, so
  a damaged one stops the run (WorkdirError) with nothing changed. A last line of
  metrics.jsonl cut short by a kill during its append is dropped with a warning.
  """

  def __init__(self, workdir: str, config, argv: list[str]):
    self.path = os.path.abspath(workdir)
    self.is_writer = jax.process_index() == 0
    self.metrics_path = os.path.join(self.path, 'metrics.jsonl')
    os.makedirs(self.path, exist_ok=True)
    config_path = os.path.join(self.path, 'config.json')
    runs_path = os.path.join(self.path, 'run.json')
    new = _config_json(config)
    old = read_config(self.path)
    if old is not None:
      # The device layout may change between restarts (checkpoints move between meshes).
      changes = [c for c in _diff(old, new) if not c.startswith(NOT_COMPARED)]
      if changes and not config.allow_config_change:
        raise WorkdirError(
            f'{self.path} holds a run of a different config:\n  ' + '\n  '.join(changes[:20])
            + '\nUse a new --workdir, or pass --config.allow_config_change=True to continue '
            'this run with the new config (config.json is then replaced).')
    runs = _read_runs(runs_path)
    _, torn = _read_metrics(self.metrics_path)
    self.writer = None
    if not self.is_writer:
      return
    for path in (config_path, runs_path, self.metrics_path):
      fileio.remove_temporaries(path)  # of a start killed while replacing them
    if torn is not None:
      fileio.rewrite_jsonl(self.metrics_path, lambda row: True)
      print(f'WARNING: the last line of {self.metrics_path} was cut short (the run was killed '
            f'while writing it): dropped it ({len(torn)} characters). The resumed run logs '
            'the steps after its checkpoint again.', flush=True)
    fileio.write_json_atomic(config_path, new, indent=2, sort_keys=True)
    record = {'argv': [sys.executable] + list(argv), 'cwd': os.getcwd(),
              'host': socket.gethostname(), 'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
              'process_count': jax.process_count(), 'devices': jax.device_count(),
              'backend': jax.default_backend(), **git_state()}
    fileio.write_json_atomic(runs_path, runs + [record], indent=2)

  def _tensorboard(self):
    if self.writer is None:
      from clu import metric_writers  # TensorFlow-backed; imported only when writing
      self.writer = metric_writers.create_default_writer(self.path, asynchronous=False)
    return self.writer

  def log(self, step: int, metrics: dict) -> None:
    if not self.is_writer:
      return
    row = {'step': int(step), **{k: _clean(v) for k, v in metrics.items()}}
    fileio.append_line(self.metrics_path, json.dumps(row))
    scalars = {k: v for k, v in row.items() if k != 'step' and isinstance(v, (int, float))}
    with fileio.writing(self._events_path):
      self._tensorboard().write_scalars(int(step), scalars)

  def log_images(self, step: int, images: dict) -> None:
    """TensorBoard images: {name: uint8 [H, W, 3] or [N, H, W, 3]} (not in metrics.jsonl)."""
    if not self.is_writer:
      return
    batches = {k: v[None] if v.ndim == 3 else v for k, v in images.items()}
    with fileio.writing(self._events_path):
      self._tensorboard().write_images(int(step), batches)

  def _events_path(self) -> str:
    """The TensorBoard events file being written (the newest), for naming it in an error;
    the workdir before there is one. TensorFlow buffers events and writes them at a later call
    (or at close), where a full disk shows."""
    events = glob.glob(os.path.join(self.path, 'events.out.tfevents.*'))
    return max(events, key=os.path.getmtime) if events else self.path

  def log_hparams(self, config) -> None:
    """The config as TensorBoard hyperparameters (once a run has its final metrics, which are
    its last scalars: the HParams dashboard shows them beside the config)."""
    if not self.is_writer:
      return
    with fileio.writing(self._events_path):
      self._tensorboard().write_hparams(flat_config(config))

  def final_row(self, step: int) -> dict | None:
    """The final-evaluation row logged at `step`, if the run got that far."""
    rows, _ = _read_metrics(self.metrics_path)
    finals = [r for r in rows if r.get('step') == step and any(
        k.startswith('val_top1_error_') or k == 'val_top1_error' for k in r)]
    return finals[-1] if finals else None

  def truncate_after(self, step: int) -> None:
    """Drops metric rows past `step` (a resumed run logs them again, from its checkpoint).

    The file is replaced atomically: a kill during this leaves all rows or the kept ones.
    """
    if not self.is_writer or not os.path.exists(self.metrics_path):
      return
    try:
      # A row without a numeric step is kept: nothing is dropped that will not be logged again.
      fileio.rewrite_jsonl(self.metrics_path, lambda row: not isinstance(
          row.get('step'), (int, float)) or row['step'] <= step)
    except fileio.DamagedFile as e:  # damaged since the start-up check
      raise _damaged(e, 'put back a copy of the file, or delete that line.') from e

  def start_over(self) -> str | None:
    """Before a run starts from step 0 in a workdir whose metrics.jsonl holds rows (of a start
    that left no good checkpoint): keeps those rows under a new name, never drops them, so the
    run logs into a fresh metrics.jsonl. Returns the new name, or None if there were no rows."""
    if not self.is_writer or not _read_metrics(self.metrics_path)[0]:
      return None
    n = 1
    while os.path.exists(os.path.join(self.path, f'metrics-before-restart-{n}.jsonl')):
      n += 1
    kept = os.path.join(self.path, f'metrics-before-restart-{n}.jsonl')
    os.replace(self.metrics_path, kept)
    print(f'{self.metrics_path} held rows of an earlier start that left no checkpoint to go on '
          f'from; they are kept as {kept}, and this run starts at step 0.', flush=True)
    return kept

  def close(self) -> None:
    if self.writer is not None:
      with fileio.writing(self._events_path):
        self.writer.flush()
        self.writer.close()
