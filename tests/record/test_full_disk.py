"""A failed write (a full disk) is one fileio.WriteFailed naming the path; nothing is damaged.

Checkpoints (orbax, synchronous and asynchronous) and TensorBoard events are written on a
real small disk (a tmpfs, tests/disk_testlib.py), filled between two writes; where mounting is
not permitted those tests are skipped, and the recognition of orbax's and TensorFlow's errors
is still checked from their real error types and messages. The record files, the stored
squares and the stats get the failure injected at the write, partial writes included. The
whole command on a full disk: tests/train/test_full_disk.py.
"""

import copy
import errno
import json
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.record import checkpoint
from alexnet_jax.record import fileio
from alexnet_jax.record import tracking
from configs.alexnet import get_config
from tests import disk_testlib

NO_SPACE = os.strerror(errno.ENOSPC)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _no_space(*args, **kwargs):
  raise OSError(errno.ENOSPC, NO_SPACE)


def test_an_append_that_fails_half_way_leaves_the_file_as_it_was(tmp_path, monkeypatch):
  path = str(tmp_path / 'metrics.jsonl')
  fileio.append_line(path, '{"step": 1}')
  before = open(path, 'rb').read()
  real_write = os.write
  calls = []

  def half_then_full(fd, data):  # what a disk does that fills during the write
    calls.append(len(data))
    if len(calls) == 1:
      return real_write(fd, data[:len(data) // 2])
    raise OSError(errno.ENOSPC, NO_SPACE)

  monkeypatch.setattr(os, 'write', half_then_full)
  with pytest.raises(fileio.WriteFailed) as failed:
    fileio.append_line(path, '{"step": 2, "loss": 2.302585092994046}')
  monkeypatch.undo()
  assert len(calls) == 2  # half of the line was written, then the disk was full
  assert str(failed.value) == f'Could not write {path}: {NO_SPACE}'
  assert failed.value.errno == errno.ENOSPC and failed.value.remedy == 'Free space there'
  assert open(path, 'rb').read() == before
  fileio.append_line(path, '{"step": 2}')  # after freeing space, appends go on
  assert fileio.read_jsonl(path) == ([{'step': 1}, {'step': 2}], None)


def test_an_atomic_write_that_fails_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
  path = str(tmp_path / 'run.json')
  fileio.write_json_atomic(path, ['old'])
  monkeypatch.setattr(os, 'fsync', _no_space)  # where a full disk shows for buffered writes
  with pytest.raises(fileio.WriteFailed, match=f'Could not write {path}: {NO_SPACE}'):
    fileio.write_json_atomic(path, ['old', 'new'])
  monkeypatch.undo()
  assert fileio.read_json(path) == ['old']
  assert os.listdir(tmp_path) == ['run.json']


def test_other_libraries_errors_are_recognised_by_the_system_message():
  import tensorflow as tf
  events = '/w/events.out.tfevents.1.host.2.0.v2'
  tensorflow = tf.errors.ResourceExhaustedError(
      None, None, f'{events}; {NO_SPACE}\n\tFailed to flush 2 events to {events}')
  tensorstore = ValueError(  # orbax's, as TensorStore words it
      'RESOURCE_EXHAUSTED: Error writing local file "/w/checkpoints/2.orbax-checkpoint-tmp/'
      f'state/_sharding": Failed to write 83 bytes to file 14: {NO_SPACE} '
      "[os_error_code='28']")
  for error in (tensorflow, tensorstore, PermissionError(errno.EACCES, 'Permission denied')):
    with pytest.raises(fileio.WriteFailed) as failed:
      with fileio.writing('/w/x'):
        raise error
    assert failed.value.filename == '/w/x' and failed.value.__cause__ is error
  with pytest.raises(PermissionError):  # a reading error, where only writes are counted
    with fileio.writing('/w/x', only=fileio.WRITE_ONLY_FAILURES):
      raise PermissionError(errno.EACCES, 'Permission denied')
  for other in (ValueError('Checkpoint for step 2 already exists.'), KeyboardInterrupt()):
    with pytest.raises(type(other)):
      with fileio.writing('/w/x'):
        raise other


def _state(seed):  # 256 KB of noise (orbax compresses, noise does not shrink) in 3 arrays
  w = jax.random.normal(jax.random.key(seed), (256, 256))
  return {'w': w, 'b': w[0] + 1, 'step': jnp.uint32(seed)}


# The save that fails, in a process of its own that then ends, as the command does: a failed
# asynchronous save's writes may go on inside a process for a while, and the rerun is a new one.
_FAILING_SAVE = """
import gc, json, logging, sys
sys.path[:0] = ['.']
from alexnet_jax.record import checkpoint, fileio
from tests import disk_testlib
from tests.record.test_full_disk import _state
directory, disk, async_save = sys.argv[1], sys.argv[2], sys.argv[3] == 'async'
records = []
handler = logging.Handler(logging.INFO)
handler.emit = records.append
for name in ('absl', 'asyncio', ''):
  logging.getLogger(name).addHandler(handler)
logging.getLogger('absl').setLevel(logging.INFO)
saving = checkpoint.Checkpoints(directory, keep=3, keep_best=0, async_save=async_save)
saving.save(1, _state(1), {'step': 1})
saving.wait()
disk_testlib.fill(disk)
try:
  saving.save(2, _state(2), {'step': 2})
  saving.wait()  # an asynchronous save fails here (or at the next save, or close)
  print(json.dumps({'error': None}))
except fileio.WriteFailed as e:
  del saving
  gc.collect()  # asyncio reports the failures of the save's other tasks when they go
  reports = [r for r in records if 'No space' in r.getMessage() + str(r.exc_info)]
  print(json.dumps({'error': str(e), 'orbax_reports': len(reports),
                    'message': checkpoint.write_failed_message(e, directory)}))
"""


@pytest.mark.parametrize('async_save', [False, True], ids=['sync', 'async'])
def test_a_checkpoint_on_a_full_disk_names_it_and_the_one_before_stays(tmp_path, async_save):
  with disk_testlib.small_disk(tmp_path / 'disk', '1m') as disk:
    directory = os.path.join(disk, 'checkpoints')
    failing = subprocess.run(
        [sys.executable, '-c', _FAILING_SAVE, directory, disk, 'async' if async_save else 'sync'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert failing.returncode == 0, failing.stderr[-3000:]
    failed = json.loads(failing.stdout.splitlines()[-1])
    assert failed['error'] == f'Could not write {directory}/2: {NO_SPACE}'
    # Orbax's own reports of it (a traceback per thread and task of the save) are left out.
    assert failed['orbax_reports'] == 0
    assert checkpoint.last_committed(directory) == 1
    assert failed['message'] == (
        f'Could not write {directory}/2: {NO_SPACE}. Nothing written before is damaged; the last '
        f'good checkpoint is step 1 ({directory}). Free space there, then run the same command '
        'to resume from it.')
    disk_testlib.free(disk)
    resumed = checkpoint.Checkpoints(directory, keep=3, keep_best=0, async_save=async_save)
    # (removing what the failed save left)
    step, state, record = resumed.restore_latest(jax.eval_shape(lambda: _state(0)))
    assert step == 1 and record == {'step': 1}
    for name, array in _state(1).items():
      np.testing.assert_array_equal(state[name], array)
    resumed.save(2, _state(2), {'step': 2})
    resumed.close()
    assert sorted(os.listdir(directory)) == ['1', '2']


def test_tensorboard_events_on_a_full_disk_name_the_events_file(tmp_path):
  with disk_testlib.small_disk(tmp_path / 'disk', '1m') as disk:
    run = tracking.Workdir(os.path.join(disk, 'run'), get_config('quickstart'), [])
    run.log(1, {'loss': 2.5})
    rows = open(run.metrics_path).read()
    events = [n for n in os.listdir(run.path) if n.startswith('events.out.tfevents.')]
    disk_testlib.fill(disk)
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8)
    with pytest.raises(fileio.WriteFailed) as failed:
      for step in range(2, 1000):  # TensorFlow writes its queue of events every 10 or so
        run.log_images(step, {'conv1': image})
      run.close()
    assert str(failed.value) == f'Could not write {os.path.join(run.path, events[0])}: {NO_SPACE}'
    assert open(run.metrics_path).read() == rows


def test_stored_squares_and_stats_on_a_full_disk_are_one_line_then_resume(
    data_folder, tmp_path, monkeypatch, capsys):
  import importlib
  from alexnet_jax.data import locations
  from alexnet_jax.data import pipeline
  from alexnet_jax.data import squares
  from alexnet_jax.data import stats
  from alexnet_jax.data.prepare import make_squares
  prepare = importlib.import_module('alexnet_jax.data.prepare.__main__')
  config = copy.deepcopy(data_folder)
  config.data_dir = str(tmp_path / 'data')
  flag = types.SimpleNamespace(value=types.SimpleNamespace(data=config))  # --config=...
  monkeypatch.setattr(prepare, '_CONFIG', flag, raising=False)
  monkeypatch.setattr(prepare, '_OVERWRITE', types.SimpleNamespace(value=False), raising=False)
  monkeypatch.setattr(stats, '_CONFIG', flag, raising=False)
  tf = make_squares.tf

  class FullDisk:
    """TensorFlow's record writer on a full disk: the error it raises, as it words it."""

    def __init__(self, path):
      self.path = path

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      return False

    def write(self, record):
      raise tf.errors.ResourceExhaustedError(None, None, f'{self.path}; {NO_SPACE}')

  with monkeypatch.context() as patch:
    patch.setattr(tf.io, 'TFRecordWriter', FullDisk)
    with pytest.raises(SystemExit) as stopped:
      prepare.main([])
  shard = os.path.join(squares.folder(config), squares.shard_file('train', 0, 1))
  assert stopped.value.code == (f'error: Could not write {shard}: {NO_SPACE}. Free space '
                                'there, then run the same command again: it goes on from the '
                                'last finished piece.')
  prepare.main([])  # the disk has room again: the same command makes everything
  assert 'Ready: ' in capsys.readouterr().out
  stats.main([])  # the stats, computed from those squares
  path = locations.stats_path(config, pipeline.open_dataset(config).source.name)
  saved = open(path, 'rb').read()
  with monkeypatch.context() as patch:
    patch.setattr(os, 'fsync', _no_space)
    with pytest.raises(SystemExit) as stopped:
      stats.main([])
  assert stopped.value.code == (f'error: Could not write {path}: {NO_SPACE}. Free space there, '
                                'then run the same command again.')
  assert open(path, 'rb').read() == saved
  assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith('.tmp')]
