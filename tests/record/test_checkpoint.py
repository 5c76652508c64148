"""Checkpoints: last K + best kept, exact round trip, corrupt latest skipped with a warning."""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.record import checkpoint
from alexnet_jax.record.checkpoint import CheckpointError
from alexnet_jax.record.checkpoint import Checkpoints


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


# ----------------------------------------------------------------------------- integrity


def _numpy_checksum(x: np.ndarray) -> str:
  """The documented checksum, computed independently in NumPy (uint64, reduced mod 2^32)."""
  x = np.asarray(x)
  if x.dtype == np.bool_:
    words = x.astype(np.uint64).ravel()
  else:
    words = x.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[x.dtype.itemsize]).astype(
        np.uint64).ravel()
  i = np.arange(words.size, dtype=np.uint64)
  mask = np.uint64(0xFFFFFFFF)
  weighted = int(np.sum((words * (2 * i + 1)) & mask) & mask)
  h = words ^ ((i * np.uint64(0x9E3779B9)) & mask)
  h ^= h >> np.uint64(16)
  h = (h * np.uint64(0x85EBCA6B)) & mask
  h ^= h >> np.uint64(13)
  h = (h * np.uint64(0xC2B2AE35)) & mask
  h ^= h >> np.uint64(16)
  mixed = int(np.sum(h) & mask)
  return f'{weighted:08x}{mixed:08x}'


def _random_state(seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return {'params': {'w': jnp.asarray(rng.normal(size=(2, 64, 96)).astype(np.float32) * scale),
                     'b': jnp.asarray(rng.normal(size=(2, 96)).astype(np.float32))},
          'opt_state': {'m': jnp.asarray(rng.normal(size=(2, 64, 96)).astype(np.float32))},
          'rng': jnp.asarray([7, 9], jnp.uint32)}


def test_checksums_equal_an_independent_numpy_computation():
  state = {**_random_state(), 'half': jnp.asarray(np.arange(10), jnp.bfloat16),
           'flag': jnp.asarray([True, False]), 'count': jnp.asarray(3, jnp.int32)}
  checksums, not_finite = checkpoint.inspect_state(state)
  assert not not_finite
  expected = {'params/w': state['params']['w'], 'params/b': state['params']['b'],
              'opt_state/m': state['opt_state']['m'], 'rng': state['rng'],
              'half': state['half'], 'flag': state['flag'], 'count': state['count']}
  assert checksums == {k: _numpy_checksum(np.asarray(v)) for k, v in expected.items()}


def test_checksums_do_not_depend_on_the_sharding():
  from jax.sharding import NamedSharding, PartitionSpec as P
  mesh = jax.make_mesh((2, 2), ('data', 'model'),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)
  state = _random_state()
  base, _ = checkpoint.inspect_state(state)
  for spec in (P('model'), P('model', 'data'), P(None, None, 'data'), P()):
    sharded = jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, spec))
                           if x.ndim == 3 else x, state)
    assert checkpoint.inspect_state(sharded)[0] == base, spec


def test_checksums_catch_single_bit_flips_and_paired_sign_flips():
  w = np.asarray(_random_state()['params']['w'])
  base = checkpoint.inspect_state({'w': w})[0]['w']
  words = w.view(np.uint32)
  for index, bit in [(0, 0), (5000, 31), (12287, 17)]:
    damaged = words.copy().reshape(-1)
    damaged[index] ^= np.uint32(1 << bit)
    assert checkpoint.inspect_state({'w': damaged.view(np.float32).reshape(w.shape)})[0]['w'] \
        != base
  # Two flipped sign bits cancel in any sum of w_i * c_i mod 2^32: the mixed sum catches them.
  damaged = words.copy().reshape(-1)
  damaged[[10, 20]] ^= np.uint32(1 << 31)
  assert checkpoint.inspect_state({'w': damaged.view(np.float32).reshape(w.shape)})[0]['w'] \
      != base
  # Two words swapped (same sum, same values): the positions catch it.
  damaged = words.copy().reshape(-1)
  damaged[[3, 4]] = damaged[[4, 3]]
  assert checkpoint.inspect_state({'w': damaged.view(np.float32).reshape(w.shape)})[0]['w'] \
      != base


def _flip_bytes_in_largest_file(step_dir) -> str:
  files = [p for p in glob.glob(os.path.join(str(step_dir), '**', '*'), recursive=True)
           if os.path.isfile(p)]
  largest = max(files, key=os.path.getsize)
  with open(largest, 'r+b') as f:
    data = bytearray(f.read())
    middle = len(data) // 2
    for i in range(middle, middle + 4):
      data[i] ^= 0xFF
    f.seek(0)
    f.write(data)
  return largest


def test_flipped_bytes_in_the_newest_checkpoint_are_caught_and_it_is_set_aside(tmp_path, capsys):
  """The reported case: bytes flipped inside the largest array file of the newest checkpoint.
  Orbax restores it without a word; the checksums catch it and the one before is used."""
  ckpt = Checkpoints(str(tmp_path), keep=3, keep_best=0)
  for step in (1, 2):
    ckpt.save(step, _random_state(step), {'step': step})
  ckpt.close()
  _flip_bytes_in_largest_file(tmp_path / '2')
  abstract = jax.eval_shape(lambda: _random_state())
  ckpt = Checkpoints(str(tmp_path), keep=3, keep_best=0)
  import orbax.checkpoint as ocp
  damaged = ckpt.manager.restore(2, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))['state']
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(damaged),
                                                      jax.tree.leaves(_random_state(2))))
  step, state, record = ckpt.restore_latest(abstract)
  assert step == 1 and record == {'step': 1}
  for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(_random_state(1))):
    np.testing.assert_array_equal(got, want)
  out = capsys.readouterr().out
  assert f'WARNING: checkpoint {tmp_path / "2"} is damaged' in out
  assert 'differ from the checksums saved with them' in out
  assert sorted(os.listdir(tmp_path)) == ['1', '2.corrupt']
  ckpt.close()


def _save_unchecked(directory, step, state):
  """A checkpoint written by orbax directly: no checksums (as before they were stored)."""
  import orbax.checkpoint as ocp
  ckpt = Checkpoints(str(directory), keep=5, keep_best=0, async_save=False)
  ckpt.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                  record=ocp.args.JsonSave({'step': step})))
  ckpt.close()


def test_a_state_that_is_not_finite_is_set_aside_then_none_good_stops(tmp_path, capsys):
  good = _random_state(1)
  nan_momentum = {**good, 'opt_state': {'m': good['opt_state']['m'].at[1, 2, 3].set(jnp.nan)}}
  _save_unchecked(tmp_path, 1, good)  # no checksums: still restored (finite)
  _save_unchecked(tmp_path, 2, nan_momentum)
  abstract = jax.eval_shape(lambda: good)
  ckpt = Checkpoints(str(tmp_path), keep=5, keep_best=0)
  step, _, _ = ckpt.restore_latest(abstract)
  assert step == 1
  assert 'not finite: opt_state/m' in capsys.readouterr().out
  ckpt.close()
  # Every checkpoint damaged (one by its checksums, one not finite): the run is told and
  # stops, rather than starting over.
  other = tmp_path / 'other'
  ckpt = Checkpoints(str(other), keep=5, keep_best=0)
  ckpt.save(1, good, {'step': 1})
  ckpt.close()
  _flip_bytes_in_largest_file(other / '1')
  _save_unchecked(other, 3, {**good, 'params': {**good['params'],
                                                'b': good['params']['b'] * jnp.inf}})
  ckpt = Checkpoints(str(other), keep=5, keep_best=0)
  with pytest.raises(CheckpointError, match=r'No checkpoint in .* is good: .*3, .*1 failed the '
                                            r'check and were moved aside'):
    ckpt.restore_latest(abstract)
  assert sorted(os.listdir(other)) == ['1.corrupt', '3.corrupt']
  ckpt.close()


def test_a_state_that_is_not_finite_is_not_saved(tmp_path):
  state = _random_state()
  state['opt_state']['m'] = state['opt_state']['m'].at[0, 0, 0].set(jnp.inf)
  ckpt = Checkpoints(str(tmp_path), keep=3, keep_best=0)
  with pytest.raises(checkpoint.NotFiniteError, match='not finite: opt_state/m'):
    ckpt.save(1, state, {'step': 1})
  ckpt.wait()
  assert ckpt.steps() == []
  ckpt.close()


def test_an_unreadable_metrics_file_sets_its_checkpoint_aside(tmp_path, capsys):
  """Orbax reads every checkpoint's validation metrics when it opens the folder, and refuses
  the whole folder if one is not JSON."""
  ckpt = Checkpoints(str(tmp_path), keep=3, keep_best=1)
  for step in (1, 2):
    ckpt.save(step, _state(step), {'step': step}, metrics={'val_error': 1.0 / step})
  ckpt.close()
  (tmp_path / '2' / 'metrics' / 'metrics').write_text('{"val_err')
  ckpt = Checkpoints(str(tmp_path), keep=3, keep_best=1)
  step, _, _ = ckpt.restore_latest(jax.eval_shape(lambda: _state(0)))
  assert step == 1
  assert 'its metrics file is not JSON' in capsys.readouterr().out
  assert sorted(os.listdir(tmp_path)) == ['1', '2.corrupt']
  ckpt.close()
