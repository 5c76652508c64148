"""Progress you can watch: a one-line bar on a terminal, periodic lines in a log file."""

from __future__ import annotations

import sys
import time

import jax

from alexnet_jax import config_schema


def _duration(seconds: float) -> str:
  seconds = int(max(0, seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'


class Progress:
  """Step, epoch, loss, images/s and time left; only process 0 prints."""

  def __init__(self, mode: str, total_steps: int, steps_per_epoch: int, start_step: int,
               stream=None):
    self.stream = stream or sys.stdout
    config_schema.check_value('progress', mode)
    if mode == 'auto':
      mode = 'bar' if getattr(self.stream, 'isatty', lambda: False)() else 'lines'
    self.mode = mode if jax.process_index() == 0 else 'none'
    self.total = total_steps
    self.steps_per_epoch = steps_per_epoch
    self.start_step = start_step
    self.start_time = time.time()
    self._bar_open = False

  def _line(self, step: int, row: dict) -> str:
    done = step - self.start_step
    rate = done / max(time.time() - self.start_time, 1e-9)
    left = (self.total - step) / rate if rate > 0 else float('inf')
    return (f'step {step}/{self.total} epoch {step / self.steps_per_epoch:.2f} '
            f'loss {row["loss"]:.4f} train-err {row["train_top1_error"]:.1f}% '
            f'{row["images_per_sec"]:.0f} img/s lr {row["learning_rate"]:.2g} '
            f'left {_duration(left)}')

  def update(self, step: int, row: dict) -> None:
    if self.mode == 'none':
      return
    line = self._line(step, row)
    if self.mode == 'bar':
      width = 30
      filled = int(width * step / max(self.total, 1))
      self.stream.write(f'\r[{"#" * filled}{"." * (width - filled)}] {line}\x1b[K')
      self._bar_open = True
    else:
      self.stream.write(line + '\n')
    self.stream.flush()

  def note(self, message: str) -> None:
    if self.mode == 'none':
      return
    if self._bar_open:
      self.stream.write('\n')
      self._bar_open = False
    self.stream.write(message + '\n')
    self.stream.flush()

  def close(self) -> None:
    if self._bar_open:
      self.stream.write('\n')
      self.stream.flush()
      self._bar_open = False
