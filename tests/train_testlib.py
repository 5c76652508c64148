"""Real `python main.py` runs for the end-to-end tests: the tiny config, running and waiting.

Every run is a real process on 4 simulated CPU devices (mesh (2, 2)) reading the miniature
ImageNet through the real imagenet2012 TFDS builder. The tests wait for events (a checkpoint
committed, a metrics row, a signal delivered), never for a speed.
"""

import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 12


def main_args(data_dir, workdir, *extra):
  """main.py with the tiny net and data: 12 steps, evaluations at 6 and 12, checkpoints every
  4 steps (and at each evaluation)."""
  return [sys.executable, 'main.py', '--config=configs/alexnet.py:quickstart',
          f'--workdir={workdir}', f'--config.data.data_dir={data_dir}',
          '--config.data.mini.images_per_class=6', '--config.data.resize_size=72',
          '--config.model.input_size=67', '--config.model.width=0.125',
          '--config.batch_size=8', f'--config.num_steps={STEPS}', '--config.log_every_steps=1',
          '--config.eval.every_steps=6', '--config.eval.batch_size=8',
          '--config.eval.final_views=(1,10)', '--config.checkpoint.every_steps=4',
          '--config.schedule.name=constant', '--config.data.shuffle_buffer=16',
          '--config.progress=lines', '--config.data.shards=2', *extra]


def main_env(**extra):
  env = dict(os.environ)
  env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  env.update(extra)
  return env


def run_main(args, env=None, timeout=600):
  return subprocess.run(args, cwd=ROOT, env=env or main_env(), capture_output=True, text=True,
                        timeout=timeout)


def start_main(args, env=None):
  """main.py started in the background, its output collected (text)."""
  return subprocess.Popen(args, cwd=ROOT, env=env or main_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def metric_rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def losses(workdir):
  return {r['step']: r['loss'] for r in metric_rows(workdir) if 'loss' in r}


def signal_state(pid) -> str:
  """The process's blocked, ignored and caught signal masks (Linux), for a failure's message: a
  SIGINT that never acts is blocked or ignored, often inherited from whatever started it."""
  try:
    with open(f'/proc/{pid}/status') as f:
      return ' '.join(line.strip() for line in f if line.startswith(('SigBlk', 'SigIgn', 'SigCgt')))
  except OSError:
    return '(no /proc status)'


def wait_for(condition, process, what, timeout=300):
  """Polls `condition()` until it is true; AssertionError if `process` ends first."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if condition():
      return
    if process.poll() is not None:
      raise AssertionError(f'the run ended before {what}')
    time.sleep(0.05)
  raise AssertionError(f'{what} never came')


def wait_for_step(workdir, step, process, timeout=300):
  path = os.path.join(workdir, 'metrics.jsonl')
  wait_for(lambda: os.path.exists(path) and any(
      r.get('step', 0) >= step and 'loss' in r for r in metric_rows(workdir)),
      process, f'step {step}', timeout)


def wait_for_checkpoint(workdir, step, process, timeout=300):
  """Waits until checkpoint `step` is committed: orbax writes it into a temporary folder and
  renames that to `checkpoints/<step>` once complete, so the folder's name is the event."""
  path = os.path.join(workdir, 'checkpoints', str(step))
  wait_for(lambda: os.path.isdir(path), process, f'checkpoint {step} was committed', timeout)


def resumed_step(stdout):
  match = re.search(r'Resumed from step (\d+)', stdout)
  assert match, stdout[-3000:]
  return int(match.group(1))
