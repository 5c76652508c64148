"""Checkpoints: last K + best kept, exact round trip, corrupt latest skipped with a warning."""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.checkpoint import CheckpointError
from alexnet_jax.checkpoint import Checkpoints


def _state(v):
  return {'params': {'w': jnp.full((3, 4), v, jnp.float32)}, 'step': jnp.asarray(int(v))}


def test_keeps_last_k_and_best(tmp_path):
  ckpt = Checkpoints(str(tmp_path), keep=2, keep_best=1)
  errors = {1: 0.5, 2: 0.3, 3: 0.6, 4: 0.7, 5: 0.8}
  for step, err in errors.items():
    ckpt.save(step, _state(step), {'step': step}, metrics={'val_error': err})
  ckpt.wait()
  # Last two (4, 5) and the lowest error (2).
  assert ckpt.steps() == [2, 4, 5]
  step, state, record = ckpt.restore_latest(jax.eval_shape(lambda: _state(0)))
  assert step == 5 and record == {'step': 5}
  np.testing.assert_array_equal(state['params']['w'], np.full((3, 4), 5.0))
  ckpt.close()


def test_corrupt_latest_falls_back_with_warning(tmp_path, capsys):
  ckpt = Checkpoints(str(tmp_path), keep=3, keep_best=0)
  for step in (1, 2):
    ckpt.save(step, _state(step), {'step': step})
  ckpt.wait()
  # Damage every data file of step 2.
  for path in glob.glob(str(tmp_path / '2' / '**' / '*'), recursive=True):
    if os.path.isfile(path) and 'state' in path:
      with open(path, 'wb') as f:
        f.write(b'garbage')
  step, state, _ = ckpt.restore_latest(jax.eval_shape(lambda: _state(0)))
  assert step == 1
  np.testing.assert_array_equal(state['params']['w'], np.ones((3, 4)))
  out = capsys.readouterr().out
  assert 'WARNING' in out and os.path.join(str(tmp_path), '2') in out
  ckpt.close()


def test_empty_directory_restores_nothing(tmp_path):
  ckpt = Checkpoints(str(tmp_path / 'none'), keep=1, keep_best=0)
  assert ckpt.restore_latest(jax.eval_shape(lambda: _state(0))) is None
  ckpt.close()


def test_best_is_still_kept_after_a_restart(tmp_path):
  """The validation errors are written with the checkpoints, so a new process (a resumed run)
  still knows which one is best."""
  ckpt = Checkpoints(str(tmp_path), keep=2, keep_best=1)
  for step, err in {1: 0.5, 2: 0.3, 3: 0.6}.items():
    ckpt.save(step, _state(step), {'step': step}, metrics={'val_error': err})
  ckpt.close()
  ckpt = Checkpoints(str(tmp_path), keep=2, keep_best=1)
  for step, err in {4: 0.7, 5: 0.8}.items():
    ckpt.save(step, _state(step), {'step': step}, metrics={'val_error': err})
  ckpt.wait()
  assert ckpt.steps() == [2, 4, 5]
  ckpt.close()


def test_a_checkpoint_of_another_model_is_refused_not_set_aside(tmp_path):
  ckpt = Checkpoints(str(tmp_path), keep=3, keep_best=0)
  ckpt.save(1, _state(1), {'step': 1})
  ckpt.close()
  ckpt = Checkpoints(str(tmp_path), keep=3, keep_best=0)  # as a new process sees it
  other = jax.eval_shape(lambda: {'params': {'w': jnp.zeros((3, 5))}, 'step': jnp.asarray(0)})
  with pytest.raises(CheckpointError, match=r'params/w: saved \(3, 4\) float32, expected '
                                            r'\(3, 5\) float32'):
    ckpt.restore_latest(other)
  assert sorted(os.listdir(tmp_path)) == ['1']
  step, _, _ = ckpt.restore_latest(jax.eval_shape(lambda: _state(0)))
  assert step == 1
  ckpt.close()
