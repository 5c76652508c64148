"""Two columns on two devices: same numbers on every mesh, shardings, communication, checkpoints.

Runs on 4 simulated CPU devices (conftest.py). The net is an eighth-width paper net on 112-pixel
inputs (feature maps 27 -> 13 -> 6 -> 6 -> 6 -> 2 after pooling), batch 8: small enough to
compile in seconds, with every layer and every exchange of the paper's net present. pool5 must
be larger than 1x1, or a wrong flattening order at fc6's input would go unnoticed.
"""

import itertools
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from alexnet_jax.data import device_preprocess
from alexnet_jax.model import alexnet as model_lib
from alexnet_jax.train import optim
from alexnet_jax import parallel
from alexnet_jax.model import summary
from alexnet_jax.train import steps as steps_lib
from configs.alexnet import get_config

BATCH = 8
SIZE = 112
MESHES = [(1, 1), (1, 2), (2, 1), (2, 2)]


def _model_config(**overrides):
  cfg = get_config('quickstart').model  # He init: activations stay alive at small width
  cfg.width = 0.125
  cfg.input_size = SIZE
  cfg.num_classes = 10
  cfg.dropout = 0.5
  for key, value in overrides.items():
    cfg[key] = value
  return cfg


def _mesh(data, model, cfg=None, devices=None):
  mesh_config = ml_collections.ConfigDict({'data': data, 'model': model})
  return parallel.make_mesh(mesh_config, cfg or _model_config(), devices=devices)


@pytest.fixture(scope='module')
def setup():
  cfg = _model_config()
  model = model_lib.create_model(cfg, seed=0)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  assert not jax.tree.leaves(rest)
  rng = np.random.default_rng(0)
  batch = {'image': rng.normal(size=(BATCH, SIZE, SIZE, 3)).astype(np.float32),
           'label': rng.integers(0, 10, BATCH).astype(np.int32)}
  return cfg, graphdef, params, batch


def _relative_error(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# ----------------------------------------------------------------------- same numbers
def test_same_numbers_on_every_mesh(setup):
  cfg, graphdef, params, batch = setup
  key = jax.random.key(7)

  # The reference: the plain single-device model, no mesh, no shard_map, optax's loss.
  def reference_loss(params):
    logits = nnx.merge(graphdef, params)(jnp.asarray(batch['image']), train=True,
                                         dropout_key=key)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
    return loss, logits

  (ref_loss, ref_train_logits), ref_grads = jax.value_and_grad(reference_loss, has_aux=True)(
      params)
  ref_eval_logits = nnx.merge(graphdef, params)(jnp.asarray(batch['image']))
  ranks = np.sum(np.asarray(ref_train_logits) >
                 np.take_along_axis(np.asarray(ref_train_logits), batch['label'][:, None], 1), 1)
  ref_grads = [np.asarray(g) for g in jax.tree.leaves(ref_grads)]
  assert max(np.max(np.abs(g)) for g in ref_grads) > 0

  for shape in MESHES:
    mesh = _mesh(*shape, cfg)
    sharded = parallel.shard_params(mesh, params)
    global_batch = parallel.global_batch(mesh, batch)
    loss_fn = parallel.make_loss_fn(graphdef, mesh, cfg)
    step = jax.jit(jax.value_and_grad(lambda p, b: loss_fn(p, b, key, train=True),
                                      has_aux=True))
    (loss, aux), grads = step(sharded, global_batch)
    logits = jax.jit(parallel.make_logits_fn(graphdef, mesh, cfg))(sharded,
                                                                   global_batch['image'])
    assert _relative_error(loss, ref_loss) < 1e-5, shape
    assert _relative_error(logits, ref_eval_logits) < 1e-5, shape
    for g, ref in zip(jax.tree.leaves(grads), ref_grads):
      assert g.shape == ref.shape
      assert _relative_error(g, ref) < 1e-5, shape
    assert int(aux['count']) == BATCH
    assert int(aux['top1']) == int(np.sum(ranks < 1)), shape
    assert int(aux['top5']) == int(np.sum(ranks < 5)), shape
    assert np.isclose(float(aux['loss_sum']), BATCH * float(ref_loss), rtol=1e-5)
    # Gradients come back laid out like the parameters.
    for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(sharded)):
      assert g.sharding.is_equivalent_to(p.sharding, g.ndim), shape


def test_weights_exclude_padding_examples(setup):
  cfg, graphdef, params, batch = setup
  mesh = _mesh(2, 2, cfg)
  loss_fn = jax.jit(parallel.make_loss_fn(graphdef, mesh, cfg), static_argnames='train')
  sharded = parallel.shard_params(mesh, params)
  weighted = dict(batch, weight=np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32))
  loss, aux = loss_fn(sharded, parallel.global_batch(mesh, weighted), train=False)
  logits = nnx.merge(graphdef, params)(jnp.asarray(batch['image'][:6]))
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'][:6]).mean()
  assert int(aux['count']) == 6
  assert _relative_error(loss, expected) < 1e-5


# ---------------------------------------------------------------------------- shardings
def _column_of(mesh, device):
  (position,) = np.argwhere(mesh.devices == device)
  return int(position[1])


@pytest.mark.parametrize('shape', [(1, 2), (2, 2)])
def test_each_device_holds_only_its_column(setup, shape):
  cfg, _, params, _ = setup
  mesh = _mesh(*shape, cfg)
  tx = optim.make_optimizer(get_config().optimizer)  # the paper's optimizer, as trained
  sharded = parallel.shard_params(mesh, params)
  opt_state = jax.jit(tx.init, out_shardings=parallel.param_sharding(
      mesh, jax.eval_shape(tx.init, params)))(sharded)
  column_leaves = 0
  for tree, full_tree in ((sharded, params), (opt_state, None)):
    for leaf, full in zip(jax.tree.leaves(tree), jax.tree.leaves(full_tree or tree)):
      full = np.asarray(full) if full_tree is not None else None
      if leaf.ndim < 2:  # step counts, learning rate: replicated
        assert leaf.sharding.is_fully_replicated
        continue
      column_leaves += 1
      assert leaf.shape[0] == 2
      assert leaf.sharding.spec == P('model')
      assert len(leaf.addressable_shards) == mesh.size
      for shard in leaf.addressable_shards:
        column = _column_of(mesh, shard.device)
        assert shard.data.shape == (1,) + leaf.shape[1:]
        assert shard.index[0] == slice(column, column + 1)
        if full is not None:
          np.testing.assert_array_equal(np.asarray(shard.data)[0], full[column])
  assert column_leaves == 2 * 16  # 8 layers x (kernel, bias): parameters and momentum
  if shape == (1, 2):  # device d holds column d
    for shard in jax.tree.leaves(sharded)[0].addressable_shards:
      assert shard.index[0] == slice(shard.device.id, shard.device.id + 1)
  # No device holds more than half the parameters.
  total = sum(x.size for x in jax.tree.leaves(params))
  for device in mesh.devices.flat:
    held = sum(s.data.size for x in jax.tree.leaves(sharded) for s in x.addressable_shards
               if s.device == device)
    assert held * 2 == total


def test_one_device_per_model_replica_replicates_parameters(setup):
  cfg, _, params, _ = setup
  mesh = _mesh(2, 1, cfg)
  for leaf in jax.tree.leaves(parallel.shard_params(mesh, params)):
    assert leaf.sharding.is_fully_replicated


# ------------------------------------------------------------------------ communication
_COLLECTIVE = re.compile(
    r'=\s*(?P<shape>.+?)\s+(?P<op>all-gather|all-reduce|reduce-scatter|collective-permute|'
    r'all-to-all|collective-broadcast|ragged-all-to-all)(?:-start)?\((?P<operands>[^)]*)\)'
    r'(?P<attrs>.*)$')


def _span_groups(ids, span):
  """The groups of `ids` (an array shaped like a mesh) that differ only along the axes in
  `span`: the devices a collective over those mesh axes joins."""
  kept = [i for i in range(ids.ndim) if i not in span]
  moved = ids.transpose(kept + list(span))
  return moved.reshape(-1, int(np.prod(moved.shape[len(kept):]))).tolist()


def _explicit_groups(match, size):
  """`{{0,1},{2,3}}`: the groups as listed; `{}` means one group of every device."""
  groups = re.findall(r'\{([\d,]*)\}', match.group(1))
  return [[int(i) for i in g.split(',') if i] for g in groups] or [list(range(size))]


def _iota_groups(match, size):
  """`[2,2]<=[4]T(1,0)`: an iota of the ids, reshaped to the dims after `<=`, transposed by
  T, then read as [groups, group size]."""
  ids = np.arange(size).reshape([int(i) for i in match.group(2).split(',')])
  if match.group(3):
    ids = ids.transpose([int(i) for i in match.group(3).split(',')])
  return ids.reshape([int(i) for i in match.group(1).split(',')]).tolist()


def _mesh_axes_groups(match, size):
  """`mesh['data'=2,'model'=2] {'model'}`: the ids in iota order on that mesh, grouped along
  the axes in braces."""
  axes = [re.fullmatch(r"'?([^'=]+)'?=(\d+)", a) for a in match.group(1).split(',')]
  assert all(axes), match.group(0)
  names = [a.group(1) for a in axes]
  grouped = [g.strip().strip("'") for g in match.group(2).split(',') if g.strip()]
  sizes = [int(a.group(2)) for a in axes]
  assert set(grouped) <= set(names) and np.prod(sizes) == size, match.group(0)
  ids = np.arange(size).reshape(sizes)
  return _span_groups(ids, [names.index(g) for g in grouped])


# The forms XLA prints replica groups in: an explicit list (jaxlib 0.10), an iota, and the
# mesh axes (jaxlib 0.12). Sub-axes ('model':(1)2) and a mesh with its own device order
# (`, device_ids=(...)`) are forms too, not seen here: they fail like any unknown form.
_REPLICA_GROUPS = [
    (re.compile(r'replica_groups=\{((?:\{[\d,]*\},?)*)\}'), _explicit_groups),
    (re.compile(r'replica_groups=\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?'), _iota_groups),
    (re.compile(r"replica_groups=mesh\[([\w',=]+)\] \{([\w', ]*)\}"), _mesh_axes_groups),
]


def _groups(attrs, size):
  """The replica groups of one collective, as sets of logical device ids.

  A missing or unknown form fails here, naming the text: read as 'no axis' it would only show
  up as a wrong count, far from the cause.
  """
  for pattern, read in _REPLICA_GROUPS:
    match = pattern.search(attrs)
    if match:
      groups = read(match, size)
      assert sorted(i for g in groups for i in g) == list(range(size)), match.group(0)
      return frozenset(frozenset(g) for g in groups)
  raise AssertionError(f'replica groups missing or in an unknown form: {attrs}')


def _axis_names(mesh):
  """Each way of grouping the mesh's devices, named by the mesh axes it spans: 'data',
  'model', 'data+model'. Smaller spans first, so that a size-1 axis adds nothing to a name."""
  positions = np.arange(mesh.size).reshape(mesh.devices.shape)
  names = {}
  for count in range(1, positions.ndim + 1):
    for span in itertools.combinations(range(positions.ndim), count):
      groups = frozenset(frozenset(g) for g in _span_groups(positions, span))
      names.setdefault(groups, '+'.join(mesh.axis_names[i] for i in span))
  return names


def _dims(shape_text):
  return [tuple(int(d) for d in dims.split(',') if d)
          for dims in re.findall(r'[a-z]+\d*\[([\d,]*)\]', shape_text)]


def collectives(hlo_text, mesh):
  """Each collective of the optimized HLO as (op, axis, phase, result shapes, operand count).

  axis: the mesh axes its replica groups span ('model', 'data'). The ids in replica groups are
  logical: positions in the executable's device assignment, which for a function jitted over a
  mesh is mesh.devices.flat, whatever the devices' own ids.
  phase: 'backward' when JAX's metadata says it comes from a transpose, else 'forward'.
  """
  axes = _axis_names(mesh)
  found = []
  for line in hlo_text.splitlines():
    match = _COLLECTIVE.search(line)
    if not match:
      continue
    groups = _groups(match.group('attrs'), mesh.size)
    axis = axes.get(groups, f'other {groups}')
    op_name = re.search(r'op_name="([^"]*)"', line)
    phase = 'backward' if op_name and 'transpose(' in op_name.group(1) else 'forward'
    operands = len(re.findall(r'%[\w.\-]+', match.group('operands')))
    found.append((match.group('op'), axis, phase, _dims(match.group('shape')), operands))
  return found


def _count(found):
  counts = {}
  for op, axis, phase, _, operands in found:
    counts[(op, axis, phase)] = counts.get((op, axis, phase), 0) + operands
  return counts


@pytest.mark.parametrize('text, axis', [
    ('replica_groups={{0,1},{2,3}}', 'model'),  # jaxlib 0.10
    ('replica_groups={{0,2},{1,3}}', 'data'),
    ('replica_groups={}', 'data+model'),
    ('replica_groups=[2,2]<=[4]', 'model'),
    ('replica_groups=[2,2]<=[2,2]T(1,0)', 'data'),
    ("replica_groups=mesh['data'=2,'model'=2] {'model'}", 'model'),  # jaxlib 0.12
    ("replica_groups=mesh['data'=2,'model'=2] {'data'}", 'data'),
    ("replica_groups=mesh['data'=2,'model'=2] {'data','model'}", 'data+model'),
])
def test_every_replica_group_form_names_the_same_axes(text, axis):
  """Each form XLA prints replica groups in names the mesh axes alike, not only the installed
  jaxlib's form."""
  mesh = _mesh(2, 2)
  attrs = f', channel_id=1, {text}, dimensions={{1}}, use_global_device_ids=true'
  assert _axis_names(mesh)[_groups(attrs, mesh.size)] == axis


@pytest.mark.parametrize('text', [
    "replica_groups=mesh['data'=4] {'data':(1)2}",
    "replica_groups=mesh['data'=2,'model'=2], device_ids=(3,2,1,0) {'model'}",
    'source_target_pairs={{0,1},{1,0}}',
])
def test_unknown_replica_group_forms_fail_naming_the_text(text):
  with pytest.raises(AssertionError, match=re.escape(text)):
    _groups(f', channel_id=1, {text}', 4)


def _compiled_train_step(graphdef, params, batch, cfg, mesh):
  """The training loop's own step (the paper's optimizer, and the float work on the uint8
  crops: colour noise, mean image, input scale), compiled for `mesh`."""
  config = get_config('quickstart')
  config.model = cfg
  tx = optim.make_optimizer(config.optimizer)
  state = {'params': params, 'opt_state': tx.init(params),
           'rng': jax.random.key_data(jax.random.key(0))}
  mean_image = np.random.default_rng(1).uniform(0, 255, (SIZE + 16, SIZE + 16, 3))
  transform = device_preprocess.input_transform(config.data, SIZE, {'mean_image': mean_image})
  assert transform.pca_scales is not None and transform.mean.shape == (SIZE, SIZE, 3)
  config.mesh.data, config.mesh.model = mesh.shape['data'], mesh.shape['model']
  steps = steps_lib.build(config, transform, devices=mesh.devices.flat)
  shardings = steps.shardings
  state = jax.device_put(state, shardings)
  step = steps.train_step
  crops = np.clip(batch['image'] * 60 + 128, 0, 255).astype(np.uint8)
  batch = dict(batch, image=crops, weight=np.ones(len(batch['label']), np.float32))
  args = (state, parallel.global_batch(mesh, batch), jnp.float32(0.01), jnp.int32(0))
  return step.lower(*args).compile(), args, shardings


def test_train_step_exchanges_only_what_the_split_needs(setup):
  """Collectives in the compiled (2, 2) train step, counted by kind, mesh axis and phase.

  Expected, from the paper's structure (local batch 4, per column: conv2 16 maps of 6x6 after
  pooling, conv5 16 maps of 2x2 after pooling, fc6/fc7 256 units, fc8 5 logits):
  forward, over 'model': all-gathers of the inputs of conv3 [4,6,6,32], fc6 [4,2,2,32] (before
  flattening), fc7 [4,512], fc8 [4,512] and of the logits [4,10]; over 'data': one all-reduce
  (loss and metric sums).
  backward, over 'model': the transposes of the four hidden gathers, reduce-scatters [4,6,6,16],
  [4,2,2,16], [4,256], [4,256] (the logits need none: each column takes its slice of their
  gradient);
  over 'data': the gradient average, one all-reduce per parameter (16).
  XLA:CPU's all-reduce combiner merges the 16 gradient all-reduces into one tuple-shaped
  all-reduce; counting operands rather than instructions makes the count independent of that.
  """
  cfg, graphdef, params, batch = setup
  mesh = _mesh(2, 2, cfg)
  compiled, args, shardings = _compiled_train_step(graphdef, params, batch, cfg, mesh)
  found = collectives(compiled.as_text(), mesh)
  assert _count(found) == {
      ('all-gather', 'model', 'forward'): 5,
      ('all-reduce', 'data', 'forward'): 1,
      ('reduce-scatter', 'model', 'backward'): 4,
      ('all-reduce', 'data', 'backward'): 16,
  }
  gathered = sorted(s for op, _, _, shapes, _ in found if op == 'all-gather' for s in shapes)
  assert gathered == sorted([(4, 6, 6, 32), (4, 2, 2, 32), (4, 512), (4, 512), (4, 10)])
  scattered = sorted(s for op, _, _, shapes, _ in found if op == 'reduce-scatter'
                     for s in shapes)
  assert scattered == sorted([(4, 6, 6, 16), (4, 2, 2, 16), (4, 256), (4, 256)])
  # No parameter is ever gathered: every gathered tensor is an activation of the local batch.
  param_shapes = {x.shape for x in jax.tree.leaves(params)} | {
      (1,) + x.shape[1:] for x in jax.tree.leaves(params)}
  assert not param_shapes & set(gathered)
  # The summary's bytes per device per step are what this HLO sends: half of each 2-way
  # all-gather's result, and each reduce-scatter's result (the other half of its operand).
  sent = 4 * (sum(np.prod(s) for s in gathered) / 2 + sum(np.prod(s) for s in scattered))
  exchanges = summary.column_exchanges(cfg, batch_size=BATCH, data_parallel=2)
  assert sum(e.bytes_per_step for e in exchanges) == sent
  # The step keeps the layout: new parameters and optimizer state sharded like the old ones.
  new_state, _ = compiled(*args)
  for new, want in zip(jax.tree.leaves(new_state), jax.tree.leaves(shardings)):
    assert new.sharding.is_equivalent_to(want, new.ndim)


def test_data_parallel_step_only_averages_gradients(setup):
  cfg, graphdef, params, batch = setup
  mesh = _mesh(2, 1, cfg)
  compiled, _, _ = _compiled_train_step(graphdef, params, batch, cfg, mesh)
  assert _count(collectives(compiled.as_text(), mesh)) == {
      ('all-reduce', 'data', 'forward'): 1, ('all-reduce', 'data', 'backward'): 16}


def test_one_data_replica_sums_nothing_over_data(setup):
  """With one replica on 'data' the step has nothing to average: no all-reduce at all on one
  device, and only the columns' exchanges on a column pair."""
  cfg, graphdef, params, batch = setup
  mesh = _mesh(1, 1, cfg)
  compiled, _, _ = _compiled_train_step(graphdef, params, batch, cfg, mesh)
  assert _count(collectives(compiled.as_text(), mesh)) == {}
  mesh = _mesh(1, 2, cfg)
  compiled, _, _ = _compiled_train_step(graphdef, params, batch, cfg, mesh)
  assert _count(collectives(compiled.as_text(), mesh)) == {
      ('all-gather', 'model', 'forward'): 5, ('reduce-scatter', 'model', 'backward'): 4}


def test_evaluation_gathers_only_activations(setup):
  cfg, graphdef, params, batch = setup
  mesh = _mesh(2, 2, cfg)
  logits_fn = jax.jit(parallel.make_logits_fn(graphdef, mesh, cfg))
  args = (parallel.shard_params(mesh, params), parallel.global_batch(mesh, batch)['image'])
  found = collectives(logits_fn.lower(*args).compile().as_text(), mesh)
  assert _count(found) == {('all-gather', 'model', 'forward'): 5}


# ---------------------------------------------------------------------------- checkpoints
def test_checkpoints_move_between_meshes(setup, tmp_path):
  cfg, graphdef, params, batch = setup
  tx = optax.sgd(0.01, momentum=0.9)
  key = jax.random.key(3)

  def one_step(mesh, state):
    loss_fn = parallel.make_loss_fn(graphdef, mesh, cfg)

    @jax.jit
    def step(state, batch):
      loss, grads = jax.value_and_grad(
          lambda p: loss_fn(p, batch, key, train=True)[0])(state['params'])
      updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
      return {'params': optax.apply_updates(state['params'], updates),
              'opt_state': opt_state}, loss

    return step(state, parallel.global_batch(mesh, batch))

  source = _mesh(1, 1, cfg)
  state = parallel.shard_params(source, {'params': params, 'opt_state': tx.init(params)})
  state, _ = one_step(source, state)  # momentum is non-zero now
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / 'from_1x1', state)
  checkpointer.wait_until_finished()
  expected = [np.asarray(x) for x in jax.tree.leaves(state)]
  continued_state, continued_loss = one_step(source, state)
  continued = [np.asarray(x) for x in jax.tree.leaves(continued_state)]

  for shape in [(1, 2), (2, 2)]:
    mesh = _mesh(*shape, cfg)
    restored = checkpointer.restore(tmp_path / 'from_1x1',
                                    parallel.abstract_with_sharding(mesh, state))
    for leaf, want in zip(jax.tree.leaves(restored), expected):
      np.testing.assert_array_equal(np.asarray(leaf), want)
      spec = P('model') if leaf.ndim >= 2 else P()
      assert leaf.sharding.mesh == mesh and leaf.sharding.spec == spec
      if leaf.ndim >= 2:
        assert leaf.addressable_shards[0].data.shape[0] == 1
    # The same next step as the run that saved it.
    next_state, loss = one_step(mesh, restored)
    assert _relative_error(loss, continued_loss) < 1e-5
    for leaf, want in zip(jax.tree.leaves(next_state), continued):
      assert _relative_error(leaf, want) < 1e-5

  # And back: saved by the (2, 2) run, restored into (1, 1).
  checkpointer.save(tmp_path / 'from_2x2', restored)
  checkpointer.wait_until_finished()
  back = checkpointer.restore(tmp_path / 'from_2x2',
                              parallel.abstract_with_sharding(source, state))
  for leaf, want in zip(jax.tree.leaves(back), expected):
    np.testing.assert_array_equal(np.asarray(leaf), want)
    assert leaf.sharding.is_fully_replicated and leaf.sharding.mesh == source
  checkpointer.close()


# ------------------------------------------------------------------------------ layouts
def test_impossible_layouts_fail_with_what_to_change():
  two_columns = _model_config()
  one_column = _model_config(columns=1)
  devices = jax.devices()
  with pytest.raises(parallel.LayoutError, match=r'mesh\.model=1.*2\+ devices'):
    _mesh(-1, 2, two_columns, devices=devices[:1])
  with pytest.raises(parallel.LayoutError, match=r'single column: set mesh\.model=1'):
    _mesh(-1, 2, one_column)
  with pytest.raises(parallel.LayoutError, match=r'3 devices .* set mesh\.model=1 or use an '
                     r'even number'):
    _mesh(-1, 2, two_columns, devices=devices[:3])
  with pytest.raises(parallel.LayoutError, match=r'= 6 devices, but there are 4: set '
                     r'mesh\.data=2 or -1'):
    _mesh(3, 2, two_columns)
  with pytest.raises(parallel.LayoutError, match=r'mesh\.model=3; use 1'):
    _mesh(-1, 3, two_columns)
  with pytest.raises(parallel.LayoutError, match=r'mesh\.data=0; use -1'):
    _mesh(0, 1, two_columns)
  mesh = _mesh(2, 2, two_columns)
  with pytest.raises(parallel.LayoutError, match=r'batch_size=7 does not split over 2 '
                     r'data-parallel replicas.*batch_size=6 or 8'):
    parallel.check_batch(mesh, 7)
  parallel.check_batch(mesh, 8)
  assert isinstance(parallel.LayoutError('x'), ValueError)


def test_mesh_defaults():
  two_columns, one_column = _model_config(), _model_config(columns=1)
  assert dict(_mesh(-1, 0, two_columns).shape) == {'data': 2, 'model': 2}
  assert dict(_mesh(-1, 0, one_column).shape) == {'data': 4, 'model': 1}
  devices = jax.devices()
  assert dict(_mesh(-1, 0, two_columns, devices=devices[:1]).shape) == {'data': 1, 'model': 1}
  assert dict(_mesh(-1, 0, two_columns, devices=devices[:3]).shape) == {'data': 3, 'model': 1}
  assert dict(_mesh(1, 1, two_columns).shape) == {'data': 1, 'model': 1}  # a subset is fine


def test_global_batch_and_data_shard():
  mesh = _mesh(2, 2)
  assert parallel.data_shard(mesh, 8) == parallel.DataShard(index=0, count=1, batch_size=8)
  labels = np.arange(8, dtype=np.int32)
  out = parallel.global_batch(mesh, {'label': labels})['label']
  assert out.shape == (8,) and out.sharding.spec == P('data')
  for shard in out.addressable_shards:
    (row, _), = np.argwhere(mesh.devices == shard.device)
    np.testing.assert_array_equal(np.asarray(shard.data), labels[4 * row:4 * row + 4])


# ---------------------------------------------------------------------- several processes
def test_distributed_arguments_are_resolved_from_flags_and_environment():
  resolve = parallel.distributed_args
  assert resolve(environ={}) is None
  assert resolve('host:1234', 1, 0, environ={}) is None  # one process: nothing to join
  args = resolve('host:1234', 2, 1, environ={})
  assert (args.source, args.kwargs) == ('flags', {'coordinator_address': 'host:1234',
                                                  'num_processes': 2, 'process_id': 1})
  with pytest.raises(parallel.LayoutError, match='missing: process_id'):
    resolve('host:1234', 2, environ={})
  with pytest.raises(parallel.LayoutError, match='0 <= process_id < num_processes'):
    resolve('host:1234', 2, 2, environ={})
  env = {'JAX_COORDINATOR_ADDRESS': '10.0.0.1:8476', 'JAX_NUM_PROCESSES': '4',
         'JAX_PROCESS_ID': '3'}
  args = resolve(environ=env)
  assert (args.source, args.kwargs) == ('env', {'coordinator_address': '10.0.0.1:8476',
                                                'num_processes': 4, 'process_id': 3})
  # Flags win over the environment.
  assert resolve('h:1', 2, 0, environ=env).kwargs['coordinator_address'] == 'h:1'
  slurm = {'SLURM_JOB_ID': '42', 'SLURM_NTASKS': '2', 'SLURM_STEP_NODELIST': 'n[1-2]',
           'SLURM_PROCID': '1', 'SLURM_LOCALID': '0'}
  args = resolve(environ=slurm)
  assert (args.source, args.kwargs) == ('slurm', {'cluster_detection_method': 'slurm'})
  assert resolve(environ=dict(slurm, SLURM_NTASKS='1')) is None  # sbatch with one task
  with pytest.raises(parallel.LayoutError, match='srun'):
    resolve(environ={'SLURM_JOB_ID': '42', 'SLURM_NTASKS': '2'})
  assert resolve(environ={'TPU_WORKER_HOSTNAMES': 'w0,w1'}).source == 'tpu'
  assert resolve(environ={'TPU_WORKER_HOSTNAMES': 'w0'}) is None  # single-host TPU VM
  assert resolve(tpu=True, environ={}).source == 'tpu'


def test_initialize_distributed_is_a_no_op_for_one_process(monkeypatch):
  for name in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID', 'SLURM_JOB_ID',
               'SLURM_NTASKS', 'TPU_WORKER_HOSTNAMES', 'TPU_PROCESS_ADDRESSES'):
    monkeypatch.delenv(name, raising=False)
  called = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda **kw: called.append(kw))
  assert parallel.initialize_distributed() is False
  assert called == []
  assert parallel.initialize_distributed('localhost:1', 2, 0) is True
  assert called == [{'coordinator_address': 'localhost:1', 'num_processes': 2, 'process_id': 0}]
  assert jax.process_count() == 1 and parallel.is_main_process()


def test_two_processes_compute_what_one_does(setup):
  """Two processes (2 CPU devices each, localhost coordinator) on one (2, 2) mesh, each reading
  only its own half of the batch, give the single-device loss and gradient norm."""
  import json
  import os
  import socket
  import subprocess
  import sys

  cfg, graphdef, params, batch = setup
  key = jax.random.key(7)

  def reference(params):
    logits = nnx.merge(graphdef, params)(jnp.asarray(batch['image']), train=True,
                                         dropout_key=key)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()

  loss, grads = jax.value_and_grad(reference)(params)
  grad_norm = np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2)
                          for g in jax.tree.leaves(grads)))
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  worker = os.path.join(os.path.dirname(__file__), 'parallel_worker.py')
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  procs = [subprocess.Popen([sys.executable, worker, str(i), str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  results = []
  for proc in procs:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    results.append(json.loads(out.strip().splitlines()[-1]))
  assert [r['shard'] for r in results] == [[0, 2, 4], [1, 2, 4]]
  assert [r['main'] for r in results] == [True, False]
  for r in results:
    assert r['devices'] == 4
    assert _relative_error(r['loss'], loss) < 1e-5
    assert _relative_error(r['grad_norm'], grad_norm) < 1e-5
