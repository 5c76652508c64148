"""Ctrl-C: real SIGINTs to real main.py processes, at start-up, during training, twice.

One workdir goes through every case in turn, so that the last run, which finishes it, is
compared with the uninterrupted reference run: each interruption must have lost nothing and
changed nothing (SIGTERM's save: tests/train/test_train.py). Each signal is sent on an event
(a file written by the run, a checkpoint committed, the previous signal delivered).
"""

import json
import os
import signal
import types

import pytest

from tests.train_testlib import (losses, main_args, metric_rows, resumed_step, signal_state,
                                 start_main, wait_for, wait_for_checkpoint, wait_for_step)

STATUS = 128 + signal.SIGINT


def _pending(pid: int, signum: int) -> bool:
  """Whether `signum` is sent to process `pid` but not yet delivered (Linux's /proc)."""
  with open(f'/proc/{pid}/status') as f:
    fields = dict(line.split(':', 1) for line in f if ':' in line)
  bit = 1 << (signum - 1)
  return any(int(fields[k], 16) & bit for k in ('SigPnd', 'ShdPnd'))


def _interrupt(process, times=1):
  """Sends SIGINT `times` times, each once the one before is delivered (two signals sent
  together would be one: a pending signal is not counted twice)."""
  for i in range(times):
    if i:
      wait_for(lambda: not _pending(process.pid, signal.SIGINT), process,
               'the first SIGINT was delivered', timeout=60)
    process.send_signal(signal.SIGINT)
  return process.communicate(timeout=600)


def _starts(workdir):
  path = os.path.join(workdir, 'run.json')
  try:
    with open(path) as f:
      return len(json.load(f))
  except (FileNotFoundError, ValueError):
    return 0


def _no_traceback(out, err):
  assert 'Traceback' not in out + err and 'KeyboardInterrupt' not in out + err, err[-3000:]


@pytest.mark.skipif(not os.path.exists('/proc/self/status'), reason='needs Linux /proc')
def test_ctrl_c_at_start_up_in_training_and_twice_loses_nothing(reference_run, tiny_data,
                                                               tmp_path):
  reference, _ = reference_run
  workdir = str(tmp_path / 'interrupted')
  args = main_args(tiny_data, workdir)

  # 1. At start-up (the run has written its config, nothing is trained): one line, no save.
  process = start_main(args)
  wait_for(lambda: _starts(workdir) == 1, process, 'the run record was written')
  out, err = _interrupt(process)
  assert process.returncode == STATUS, err[-3000:]
  assert out.splitlines()[-1] == ('Interrupted before the first step: nothing new to save (no '
                                  'checkpoint yet; run the same command to start).')
  _no_traceback(out, err)
  assert not [n for n in os.listdir(os.path.join(workdir, 'checkpoints')) if n.isdigit()]

  # 2. After a checkpoint (4), around the evaluation of step 6: saves the step it reached.
  process = start_main(args)
  wait_for_checkpoint(workdir, 4, process)
  wait_for_step(workdir, 6, process)
  out, err = _interrupt(process)
  assert process.returncode == STATUS, err[-3000:]
  last = out.splitlines()[-1]
  saved = int(last.split()[3]) if last.startswith('Interrupted: saved step ') else None
  assert saved is not None and saved >= 6, out[-3000:]
  checkpoints = os.path.join(workdir, 'checkpoints')
  assert last == (f'Interrupted: saved step {saved} to {checkpoints}; run the same command to '
                  'resume.')
  assert os.path.isdir(os.path.join(checkpoints, str(saved)))
  _no_traceback(out, err)

  # 3. Twice, while it restores that checkpoint: stops at once, naming it.
  process = start_main(args)
  wait_for(lambda: _starts(workdir) == 3, process, 'the run record was written')
  out, err = _interrupt(process, times=2)
  assert process.returncode == STATUS, err[-3000:]
  assert err.splitlines()[-1] == (
      f'Interrupted again: stopped at once; nothing after the last checkpoint (step {saved}) '
      'was saved; run the same command to resume from it.')
  _no_traceback(out, err)

  # 4. The same command finishes the run as if nothing had happened.
  process = start_main(args)
  out, err = process.communicate(timeout=600)
  assert process.returncode == 0, err[-3000:]
  assert resumed_step(out) == saved
  assert losses(workdir) == losses(reference)
  evaluations = [{k: v for k, v in r.items() if k != 'wall_time'}
                 for r in metric_rows(workdir) if 'val_top1_error' in r]
  assert evaluations == [{k: v for k, v in r.items() if k != 'wall_time'}
                         for r in metric_rows(reference) if 'val_top1_error' in r]


@pytest.mark.skipif(not os.path.exists('/proc/self/maps'), reason='needs Linux /proc')
def test_ctrl_c_in_eval_mode_is_one_line(reference_run, tiny_data):
  workdir, _ = reference_run
  process = start_main(main_args(tiny_data, workdir, '--mode=eval'))

  def loaded_tensorflow():  # the evaluation pipeline's library: where Ctrl-C used to land
    with open(f'/proc/{process.pid}/maps') as f:
      return 'libtensorflow_framework' in f.read()

  wait_for(loaded_tensorflow, process, 'TensorFlow was loaded')
  masks = signal_state(process.pid)
  out, err = _interrupt(process)
  assert process.returncode == STATUS, (masks, err[-3000:])
  assert err.splitlines()[-1] == (
      'Interrupted: --mode=eval stopped before it finished (what it writes is written whole or '
      'not at all); run the same command again.')
  _no_traceback(out, err)


@pytest.mark.parametrize('command', ['prepare', 'stats'])
def test_ctrl_c_in_a_data_command_is_one_line(command, monkeypatch, capsys, tmp_path):
  import importlib
  from alexnet_jax.data import stats as stats_command
  from alexnet_jax.data.prepare import prepare as prepare_lib
  from alexnet_jax.data.prepare import stats as stats_lib
  from configs.alexnet import get_config
  prepare_command = importlib.import_module('alexnet_jax.data.prepare.__main__')
  module, work, name = {'prepare': (prepare_command, prepare_lib, 'prepare'),
                        'stats': (stats_command, stats_lib, 'compute_and_save')}[command]

  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(work, name, interrupted)
  data = get_config('quickstart').data
  data.data_dir = str(tmp_path / 'data')
  config = types.SimpleNamespace(value=types.SimpleNamespace(data=data))
  monkeypatch.setattr(module, '_CONFIG', config, raising=False)
  monkeypatch.setattr(module, '_OVERWRITE', types.SimpleNamespace(value=False), raising=False)
  with pytest.raises(SystemExit) as stopped:
    module.main([])
  assert stopped.value.code == STATUS
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and err.startswith('Interrupted: '), err


def test_a_second_sigterm_is_ignored_and_the_handlers_are_put_back():
  """In this process: the first signal is a flag; a second SIGTERM (a scheduler repeating
  itself) does not stop the save it asked for; leaving puts the handlers back."""
  from alexnet_jax.train import interrupts
  before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
  this = types.SimpleNamespace(pid=os.getpid(), poll=lambda: None)
  with interrupts.watch() as interrupted:
    with interrupts.watch() as inner:  # what the loop gets: the command's
      assert inner is interrupted
    for _ in range(2):
      os.kill(this.pid, signal.SIGTERM)
      wait_for(lambda: not _pending(this.pid, signal.SIGTERM), this, 'delivery', timeout=60)
    wait_for(lambda: interrupted.requested, this, 'the flag', timeout=60)
    assert interrupted.received == signal.SIGTERM
  # Leaving waits for the watcher to have read every signal: this process is still here.
  assert {s: signal.getsignal(s) for s in interrupts.SIGNALS} == before
  assert signal.set_wakeup_fd(-1) == -1  # the watcher's socket is no longer written to
