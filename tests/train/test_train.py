"""End to end: main.py trains, evaluates, records and resumes exactly, on a tiny built-in dataset.

Every run is a real `python main.py` process on 4 simulated CPU devices (mesh (2, 2): the two
columns on two devices, two data-parallel replicas), reading the miniature ImageNet through the
real imagenet2012 TFDS builder (tests/train_testlib.py); the dataset and the uninterrupted
reference run are made once (tests/train/conftest.py).
"""

import json
import os
import re
import signal
import subprocess

import pytest

from tests.train_testlib import ROOT, STEPS
from tests.train_testlib import losses as _losses
from tests.train_testlib import main_args as _args
from tests.train_testlib import main_env as _env
from tests.train_testlib import metric_rows as _rows
from tests.train_testlib import resumed_step as _resumed_step
from tests.train_testlib import run_main as _run
from tests.train_testlib import wait_for_checkpoint as _wait_for_checkpoint
from tests.train_testlib import wait_for_step as _wait_for_step


def test_trains_and_records(reference_run):
  workdir, stdout = reference_run
  rows = _rows(workdir)
  train_rows = [r for r in rows if 'loss' in r]
  assert [r['step'] for r in train_rows] == list(range(1, STEPS + 1))
  for key in ('epoch', 'loss', 'learning_rate', 'train_top1_error', 'images_per_sec',
              'wall_time'):
    assert key in train_rows[-1], key
  evals = [r for r in rows if 'val_top1_error' in r]
  assert [r['step'] for r in evals] == [6, STEPS]
  assert 'val_top1_error_10view' in evals[-1] and 'val_top5_error_10view' in evals[-1]
  config = json.load(open(os.path.join(workdir, 'config.json')))
  assert config['model']['width'] == 0.125 and config['num_steps'] == STEPS
  run = json.load(open(os.path.join(workdir, 'run.json')))[0]
  assert '--config.model.width=0.125' in run['argv'] and 'commit' in run and 'dirty' in run
  assert any(f.startswith('events.out') for f in os.listdir(workdir))
  assert 'step 12/12' in stdout and 'img/s' in stdout


def test_evaluation_counts_every_example_once(reference_run):
  workdir, stdout = reference_run
  # 10 classes x 6 images; the eval split is train[90%:] = 6 examples, batch 8 over 2 replicas:
  # one padded batch. Both view counts see each example once.
  assert 'Final validation (1 view, 6 examples)' in stdout
  assert 'Final validation (10 views, 6 examples)' in stdout


def test_eval_mode_evaluates_the_checkpoint(reference_run, tiny_data):
  workdir, stdout = reference_run
  result = _run(_args(tiny_data, workdir, '--mode=eval'))
  assert result.returncode == 0, result.stderr[-3000:]
  final = [r for r in _rows(workdir) if 'val_top1_error' in r][-1]
  assert f'step {STEPS}, 1 view(s), 6 examples: top-1 error {final["val_top1_error"]:.2f}%' in (
      result.stdout)


def test_resume_after_kill_is_exact(reference_run, tiny_data, tmp_path):
  reference, _ = reference_run
  workdir = str(tmp_path / 'killed')
  process = subprocess.Popen(_args(tiny_data, workdir), cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  _wait_for_step(workdir, 7, process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  result = _run(_args(tiny_data, workdir))
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Resumed from step' in result.stdout
  assert _losses(workdir) == _losses(reference)


def test_resume_after_kill_during_save_is_exact(reference_run, tiny_data, tmp_path):
  reference, _ = reference_run
  workdir = str(tmp_path / 'killed_saving')
  # main.py, killed the moment the asynchronous save of step 8 has started.
  args = _args(tiny_data, workdir)
  args[1:2] = [os.path.join('tests', 'kill_during_save.py'), '8']
  killed = _run(args)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  result = _run(_args(tiny_data, workdir))
  assert result.returncode == 0, result.stderr[-3000:]
  # Step 8's save may or may not have completed; 6 (the evaluation's) is there either way.
  assert 'Resumed from step 6' in result.stdout or 'Resumed from step 8' in result.stdout
  assert _losses(workdir) == _losses(reference)


def _learning_rates(workdir):
  return {r['step']: r['learning_rate'] for r in _rows(workdir) if 'learning_rate' in r}


def test_resume_restores_the_plateau_schedule(tiny_data, tmp_path):
  """The plateau rule's state (best error, evaluations without improvement, reductions) is in
  the checkpoint: killed after its first reduction, the resumed run goes on exactly."""
  # Evaluations at steps 3, 6, 9; min_delta=100 makes every evaluation after the first a
  # non-improvement, so with patience 1 the rate drops at 6 and again at 9.
  plateau = ('--config.schedule.name=plateau', '--config.schedule.warmup_steps=0',
             '--config.schedule.patience=1',
             '--config.schedule.min_delta=100', '--config.eval.every_steps=3',
             '--config.eval.final_views=(1,)')
  reference = str(tmp_path / 'plateau_reference')
  result = _run(_args(tiny_data, reference, *plateau))
  assert result.returncode == 0, result.stderr[-3000:]
  lrs = _learning_rates(reference)
  assert lrs[6] == pytest.approx(0.01) and lrs[7] == pytest.approx(1e-3)
  assert lrs[10] == pytest.approx(1e-4)
  workdir = str(tmp_path / 'plateau_killed')
  process = subprocess.Popen(_args(tiny_data, workdir, *plateau), cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  # Killed once step 8 is logged and the checkpoint of step 6 (the first reduction's) is
  # committed: waiting for the commit, not for a speed, keeps this exact on a busy machine,
  # where the asynchronous save may finish after later steps were logged.
  _wait_for_step(workdir, 8, process)
  _wait_for_checkpoint(workdir, 6, process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  result = _run(_args(tiny_data, workdir, *plateau))
  assert result.returncode == 0, result.stderr[-3000:]
  # The newest committed checkpoint at the kill: 6, or a later one (8, 9) if it was committed.
  assert 6 <= _resumed_step(result.stdout) < STEPS
  assert _learning_rates(workdir) == lrs
  assert _losses(workdir) == _losses(reference)


def test_best_checkpoint_is_kept_and_a_finished_run_is_not_rerun(reference_run, tiny_data):
  workdir, _ = reference_run
  checkpoints = os.path.join(workdir, 'checkpoints')
  steps = sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit())
  # Saved: 4, 6 (at the evaluation), 8, 12 (the end); kept: the last 3 (checkpoint.keep) and
  # the best evaluated one (6 or 12, both among them).
  assert steps == [6, 8, 12], steps
  for step in (6, 12):  # evaluated saves carry their validation error on disk
    assert os.path.exists(os.path.join(checkpoints, str(step), 'metrics')), step
  rows = _rows(workdir)
  result = _run(_args(tiny_data, workdir))
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'holds a finished run' in result.stdout
  assert _rows(workdir) == rows


def test_sigterm_saves_then_resumes(reference_run, tiny_data, tmp_path):
  reference, _ = reference_run
  workdir = str(tmp_path / 'preempted')
  process = subprocess.Popen(_args(tiny_data, workdir), cwd=ROOT, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  _wait_for_step(workdir, 5, process)
  process.send_signal(signal.SIGTERM)
  out, _ = process.communicate(timeout=300)
  assert process.returncode == 143 and 'SIGTERM: saved step' in out
  result = _run(_args(tiny_data, workdir))
  assert result.returncode == 0, result.stderr[-3000:]
  assert _losses(workdir) == _losses(reference)


def test_nan_loss_stops_with_the_step(tiny_data, tmp_path):
  """A rate of 1e12 from step 6 on (a 'steps' schedule multiplying by 1e14 there) blows the
  run up after the checkpoint of step 4: the run stops naming the step and step 4 stays."""
  workdir = str(tmp_path / 'nan')
  result = _run(_args(tiny_data, workdir, '--config.schedule.name=steps',
                      '--config.schedule.boundaries_epochs=()',
                      '--config.schedule.boundaries_steps=(5,)', '--config.schedule.factor=1e14',
                      '--config.eval.every_steps=0'))
  assert result.returncode != 0
  match = re.search(r'Loss is (nan|inf|-inf) at step (\d+)', result.stderr)
  assert match, result.stderr[-3000:]
  bad_step = int(match.group(2))
  assert bad_step >= 6
  logged = sorted(_losses(workdir))
  assert logged == list(range(1, bad_step))  # every step before it, none after
  checkpoints = os.path.join(workdir, 'checkpoints')
  assert sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit()) == [4]
  assert 'checkpoint (step 4) is kept' in result.stderr


def test_bfloat16_loss_stays_close(reference_run, tiny_data, tmp_path):
  reference, _ = reference_run
  workdir = str(tmp_path / 'bf16')
  result = _run(_args(tiny_data, workdir, '--config.model.dtype=bfloat16',
                      '--config.num_steps=4', '--config.eval.final_views=(1,)'))
  assert result.returncode == 0, result.stderr[-3000:]
  ref, got = _losses(reference), _losses(workdir)
  for step in range(1, 5):
    assert abs(got[step] - ref[step]) < 0.02 * abs(ref[step]), (step, got[step], ref[step])


def test_bad_layouts_and_workdirs_fail_before_compiling(tiny_data, tmp_path):
  cases = [
      (['--config.mesh.model=2', '--config.model.columns=1'], 'mesh.model=2'),
      (['--config.batch_size=7'], 'batch'),
      (['--config.schedule.name=bogus'], 'schedule.name'),
      (['--config.optimizer.name=adam'], 'optimizer.name'),
      (['--config.eval.final_views=(5,)'], 'views'),
  ]
  workdir = tmp_path / 'layout'
  for extra, message in cases:
    result = _run(_args(tiny_data, str(workdir), *extra), timeout=120)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    assert not (workdir / 'config.json').exists()  # nothing written: a fixed command can run


def test_eval_mode_refuses_another_model_and_moves_nothing(reference_run, tiny_data):
  workdir, _ = reference_run
  before = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  result = _run(_args(tiny_data, workdir, '--mode=eval', '--config.model.width=0.25'),
                timeout=120)
  assert result.returncode != 0 and 'another model' in result.stderr, result.stderr[-2000:]
  assert 'model.width: 0.125 -> 0.25' in result.stderr
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == before


def test_checkpoint_moves_between_meshes_and_training_continues(reference_run, tiny_data,
                                                                tmp_path):
  """Steps 1-6 on one device (mesh (1, 1)), steps 7-12 resumed on mesh (2, 2): the same losses
  as the (2, 2) run throughout (to float32 reduction-order noise)."""
  reference, _ = reference_run
  workdir = str(tmp_path / 'moved')
  first = _run(_args(tiny_data, workdir, '--config.mesh.model=1', '--config.mesh.data=1',
                     '--config.num_steps=6', '--config.eval.final_views=(1,)'))
  assert first.returncode == 0, first.stderr[-3000:]
  # Continue the same run to the full length on the (2, 2) mesh.
  second = _run(_args(tiny_data, workdir, '--config.allow_config_change=True'))
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'Resumed from step 6' in second.stdout
  ref, got = _losses(reference), _losses(workdir)
  assert sorted(got) == sorted(ref)
  for step in ref:
    assert abs(got[step] - ref[step]) <= 1e-5 * abs(ref[step]), (step, got[step], ref[step])


def test_two_processes_train_like_one(reference_run, tiny_data, tmp_path):
  """Two processes of 2 CPU devices each (localhost coordinator) = one process of 4 devices."""
  import socket
  reference, _ = reference_run
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  workdir = str(tmp_path / 'two_processes')
  env = _env(XLA_FLAGS='--xla_force_host_platform_device_count=2')
  procs = [subprocess.Popen(
      _args(tiny_data, workdir, f'--coordinator_address=localhost:{port}', '--num_processes=2',
            f'--process_id={i}', '--config.eval.final_views=(1,)'),
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  assert 'Final validation (1 view, 6 examples)' in outputs[0][0]
  assert 'step 12/12' in outputs[0][0] and 'step 12/12' not in outputs[1][0]  # process 0 logs
  ref, got = _losses(reference), _losses(workdir)
  assert sorted(got) == sorted(ref)
  for step in ref:
    assert abs(got[step] - ref[step]) <= 1e-5 * abs(ref[step]), (step, got[step], ref[step])


# ------------------------------------------------ damaged workdirs and kills inside record writes


def _killed_inside(data_dir, workdir, file, when, nth, *extra):
  """main.py, SIGKILLed inside its `nth` write of `file` (tests/kill_during_write.py)."""
  args = _args(data_dir, workdir, *extra)
  args[1:2] = [os.path.join('tests', 'kill_during_write.py'), file, when, str(nth), 'main.py']
  return _run(args)


def _flip_bytes_in_largest_file(folder):
  files = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
  largest = max(files, key=os.path.getsize)
  with open(largest, 'r+b') as f:
    data = bytearray(f.read())
    for i in range(len(data) // 2, len(data) // 2 + 4):
      data[i] ^= 0xFF
    f.seek(0)
    f.write(data)


def test_damaged_checkpoint_and_kills_inside_record_writes_resume_exactly(
    reference_run, tiny_data, tmp_path):
  """The finished reference run with bytes flipped in its newest checkpoint (12), restarted and
  killed inside the rewrite of metrics.jsonl, then inside an append to it, then run to the end:
  the damaged checkpoint is set aside for 8, no row is lost, and the losses are the
  reference's. (Kills inside config.json and run.json: tests/test_tracking.py.)"""
  import shutil
  reference, _ = reference_run
  workdir = str(tmp_path / 'damaged')
  shutil.copytree(reference, workdir)
  _flip_bytes_in_largest_file(os.path.join(workdir, 'checkpoints', '12', 'state'))
  rows = _rows(reference)
  starts = len(json.load(open(os.path.join(reference, 'run.json'))))
  # 1. Restores 8 (12 is set aside), killed while dropping the rows of steps 9-12.
  first = _killed_inside(tiny_data, workdir, 'metrics.jsonl', 'write', 1)
  assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
  assert re.search(r'WARNING: checkpoint \S+/checkpoints/12 is damaged', first.stdout), (
      first.stdout[-3000:])
  assert _rows(workdir) == rows  # the old content, whole
  # 2. Drops them, killed inside the append of step 9's row.
  second = _killed_inside(tiny_data, workdir, 'metrics.jsonl', 'write', 2)
  assert second.returncode == -signal.SIGKILL, second.stderr[-3000:]
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    *whole, torn = f.read().split('\n')
  assert [json.loads(line) for line in whole] == [r for r in rows if r['step'] <= 8]
  assert torn.startswith('{"step": 9')
  # 3. Drops the torn row with a warning and runs to the end.
  result = _run(_args(tiny_data, workdir))
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(r'WARNING: the last line of \S+metrics.jsonl was cut short', result.stdout)
  assert _resumed_step(result.stdout) == 8
  assert _losses(workdir) == _losses(reference)
  assert [r['step'] for r in _rows(workdir) if 'val_top1_error' in r] == [6, 12]
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '12.corrupt'))
  assert len(json.load(open(os.path.join(workdir, 'run.json')))) == starts + 3
  with open(os.path.join(reference, 'config.json')) as f, open(
      os.path.join(workdir, 'config.json')) as g:
    assert json.load(f) == json.load(g)


def test_damaged_workdirs_stop_with_one_line_and_change_nothing(reference_run, tiny_data,
                                                                tmp_path):
  import shutil
  reference, _ = reference_run
  (tmp_path / 'a_file').write_text('not a folder')

  def snapshot(folder):
    out = {}
    for d, _, names in os.walk(folder):
      for name in names:
        with open(os.path.join(d, name), 'rb') as f:
          out[os.path.relpath(os.path.join(d, name), folder)] = f.read()
    return out

  # (file to damage, its content, mode, what the message says); every damaged record file's
  # message: tests/test_tracking.py.
  cases = [('config.json', '{"model": {', 'train', 'config.json is not JSON'),
           ('config.json', '', 'eval', 'config.json is not JSON')]
  for i, (file, content, mode, message) in enumerate(cases):
    workdir = str(tmp_path / f'case{i}')
    shutil.copytree(reference, workdir)
    with open(os.path.join(workdir, file), 'w') as f:
      f.write(content)
    before = snapshot(workdir)
    result = _run(_args(tiny_data, workdir, f'--mode={mode}'))
    assert result.returncode == 1, result.stderr[-3000:]
    # One line, the last (TensorFlow's start-up chatter may come before it), no traceback.
    line = result.stderr.strip().splitlines()[-1]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert message in line and os.path.join(workdir, file) in line, result.stderr[-3000:]
    assert 'delete' in line and 'Nothing was changed' in line
    assert snapshot(workdir) == before
  for workdir, message in ((tmp_path / 'a_file', 'is a file, not a folder'),
                           (tmp_path / 'a_file' / 'run', 'which is a file')):
    result = _run(_args(tiny_data, str(workdir)), timeout=120)
    assert result.returncode == 1, result.stderr[-3000:]
    assert message in result.stderr.strip().splitlines()[-1], result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
  assert (tmp_path / 'a_file').read_text() == 'not a folder'
  # --verbosity=1 adds the traceback.
  result = _run(_args(tiny_data, str(tmp_path / 'case1'), '--mode=eval', '--verbosity=1'))
  assert result.returncode == 1 and 'Traceback' in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith('WorkdirError: ')
