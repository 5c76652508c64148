"""The workdir as the record of one experiment: config, command, code version, metrics.

    config.json      the resolved config (what `--config` and the overrides made)
    run.json         command line, git commit and whether the tree was dirty, per start
    metrics.jsonl    one JSON object per logged step or evaluation
    events.out.*     TensorBoard event files (via clu)

Only process 0 writes. A workdir that holds a run of a different config refuses a new one
unless `config.allow_config_change` is set, so results of two configs never mix.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time

import jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WorkdirError(RuntimeError):
  pass


# Config fields that do not change a run's results, so a workdir may resume under new values.
NOT_COMPARED = ('allow_config_change:', 'mesh.', 'progress:')


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


def _clean(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if hasattr(value, 'item'):
    return _clean(value.item())
  return value


# Fields of config.model that do not change the parameters: --mode=eval may set them freely.
MODEL_NOT_COMPARED = ('conv_impl', 'conv1_impl', 'dtype')


def check_model_config(workdir: str, config) -> None:
  """WorkdirError unless `config.model` builds the net the workdir's run trained.

  For --mode=eval, which writes nothing: data and evaluation settings may differ (another
  split, 10 views), the model may not.
  """
  path = os.path.join(os.path.abspath(workdir), 'config.json')
  if not os.path.exists(path):
    raise WorkdirError(f'{workdir} holds no run (no config.json): train first, or point '
                       '--workdir at a run.')
  with open(path) as f:
    old = json.load(f).get('model', {})
  new = _config_json(config)['model']
  changes = [c for c in _diff(old, new, 'model.')
             if not c.startswith(tuple(f'model.{k}:' for k in MODEL_NOT_COMPARED))]
  if changes:
    raise WorkdirError(f'{workdir} holds a run of another model:\n  ' + '\n  '.join(changes)
                       + '\nEvaluate it with the config it was trained with (its config.json).')


class Workdir:
  """Writes the run record; `log` appends metrics to metrics.jsonl and TensorBoard."""

  def __init__(self, workdir: str, config, argv: list[str]):
    self.path = os.path.abspath(workdir)
    self.is_writer = jax.process_index() == 0
    os.makedirs(self.path, exist_ok=True)
    config_path = os.path.join(self.path, 'config.json')
    new = _config_json(config)
    if os.path.exists(config_path):
      with open(config_path) as f:
        old = json.load(f)
      # The device layout may change between restarts (checkpoints move between meshes).
      changes = [c for c in _diff(old, new) if not c.startswith(NOT_COMPARED)]
      if changes and not config.allow_config_change:
        raise WorkdirError(
            f'{self.path} holds a run of a different config:\n  ' + '\n  '.join(changes[:20])
            + '\nUse a new --workdir, or pass --config.allow_config_change=True to continue '
            'this run with the new config (config.json is then replaced).')
    self.writer = None
    if not self.is_writer:
      return
    with open(config_path, 'w') as f:
      json.dump(new, f, indent=2, sort_keys=True)
    record = {'argv': [sys.executable] + list(argv), 'cwd': os.getcwd(), 'host': socket.gethostname(),
              'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
              'process_count': jax.process_count(), 'devices': jax.device_count(),
              'backend': jax.default_backend(), **git_state()}
    runs_path = os.path.join(self.path, 'run.json')
    runs = []
    if os.path.exists(runs_path):
      with open(runs_path) as f:
        runs = json.load(f)
    with open(runs_path, 'w') as f:
      json.dump(runs + [record], f, indent=2)
    self.metrics_path = os.path.join(self.path, 'metrics.jsonl')

  def _tensorboard(self):
    if self.writer is None:
      from clu import metric_writers  # TensorFlow-backed; imported only when writing
      self.writer = metric_writers.create_default_writer(self.path, asynchronous=False)
    return self.writer

  def log(self, step: int, metrics: dict) -> None:
    if not self.is_writer:
      return
    row = {'step': int(step), **{k: _clean(v) for k, v in metrics.items()}}
    with open(self.metrics_path, 'a') as f:
      f.write(json.dumps(row) + '\n')
    scalars = {k: v for k, v in row.items() if k != 'step' and isinstance(v, (int, float))}
    self._tensorboard().write_scalars(int(step), scalars)

  def log_images(self, step: int, images: dict) -> None:
    """TensorBoard images: {name: uint8 [H, W, 3] or [N, H, W, 3]} (not in metrics.jsonl)."""
    if not self.is_writer:
      return
    batches = {k: v[None] if v.ndim == 3 else v for k, v in images.items()}
    self._tensorboard().write_images(int(step), batches)

  def final_row(self, step: int) -> dict | None:
    """The final-evaluation row logged at `step`, if the run got that far."""
    path = os.path.join(self.path, 'metrics.jsonl')
    if not os.path.exists(path):
      return None
    with open(path) as f:
      rows = [json.loads(line) for line in f if line.strip()]
    finals = [r for r in rows if r['step'] == step and any(k.startswith('val_top1_error_')
                                                            or k == 'val_top1_error'
                                                            for k in r)]
    return finals[-1] if finals else None

  def truncate_after(self, step: int) -> None:
    """Drops metric rows past `step` (a resumed run logs them again, from its checkpoint)."""
    if not self.is_writer or not os.path.exists(self.metrics_path):
      return
    with open(self.metrics_path) as f:
      rows = [line for line in f if line.strip() and json.loads(line)['step'] <= step]
    with open(self.metrics_path, 'w') as f:
      f.writelines(rows)

  def close(self) -> None:
    if self.writer is not None:
      self.writer.flush()
      self.writer.close()
