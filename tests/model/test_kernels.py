"""The kernels, chosen once from model.platform: what each platform gets, that the graphdef
carries the choice, and that the accelerators' kernels, run on this CPU, give the logits and
gradients of the CPU's kernels and of the independent PyTorch net (tests/torch_reference.py),
on one device and with the two columns on two devices.

Nets: the full-shape paper net (224 pixels, 1000 classes) on one device; a quarter-width paper
net on 99-pixel inputs for the split over a ('data', 'model') mesh and the split and grouped
convolutions; the quickstart net (configs/alexnet.py:quickstart). Dropout is on: the loss is the
training loss, with the model's own masks given to the PyTorch net.
"""

import ast
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from alexnet_jax import parallel
from alexnet_jax.model import alexnet as model_lib
from alexnet_jax.model import kernels as kernels_lib
from alexnet_jax.record import tracking
from configs.alexnet import get_config

torch_reference = pytest.importorskip('tests.torch_reference')

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / 'alexnet_jax'
ACCELERATOR = dict(conv='grouped', conv1='conv', dense='einsum', bias='plain', pool='xla',
                   lrn_power='plain')
CPU = dict(conv='split', conv1='conv', dense='column_batched', bias='windowed', pool='written',
           lrn_power='vector')


def _model_config(net: str, **overrides) -> ml_collections.ConfigDict:
  if net == 'quickstart':
    m = get_config('quickstart').model
  else:
    m = get_config().model
    m.init, m.bias_init = 'he', 0.1  # activations of a useful size at any width
    if net == 'paper_small':
      m.width, m.input_size, m.num_classes = 0.25, 99, 10
  m.update(overrides)
  return m


# ------------------------------------------------------------------------------ the choice
@pytest.mark.parametrize('platform,expected', [('cpu', CPU), ('gpu', ACCELERATOR),
                                               ('tpu', ACCELERATOR)])
def test_each_platform_gets_its_kernels(platform, expected):
  assert kernels_lib.choose(_model_config('paper', platform=platform)) == kernels_lib.Kernels(
      platform=platform, **expected)


def test_auto_is_the_backend_and_the_impl_fields_override_their_parts():
  assert jax.default_backend() == 'cpu'
  assert kernels_lib.choose(_model_config('paper')) == kernels_lib.Kernels('cpu', **CPU)
  assert kernels_lib.choose(None) == kernels_lib.Kernels('cpu', **CPU)
  old = _model_config('paper')
  del old['platform']  # a config from before the field: 'auto'
  assert kernels_lib.choose(old).platform == 'cpu'
  gpu_split = kernels_lib.choose(_model_config('paper', platform='gpu', conv_impl='split',
                                               conv1_impl='im2col'))
  assert gpu_split == kernels_lib.Kernels('gpu', **dict(ACCELERATOR, conv='split',
                                                          conv1='im2col'))
  assert kernels_lib.choose(_model_config('paper', conv_impl='grouped')).conv == 'grouped'


def test_unknown_platform_fails_with_the_choices():
  choices = r"model.platform='cuda'; use 'auto', 'cpu', 'gpu' or 'tpu'"  # the config schema's
  with pytest.raises(ValueError, match=choices):
    model_lib.create_model(_model_config('paper_small', platform='cuda'))


def test_the_graphdef_carries_the_kernels_and_the_parameters_do_not_change():
  """A step built from the graphdef alone runs the kernels chosen when the model was built:
  the accelerators' grouped convolution appears in its HLO, not in the CPU kernels'. The
  parameter tree (names, shapes, dtypes) is the same for every platform."""
  trees = {}
  for platform in ('cpu', 'gpu'):
    cfg = _model_config('paper_small', platform=platform)
    graphdef, params = nnx.split(nnx.eval_shape(lambda: model_lib.create_model(cfg)), nnx.Param)
    assert nnx.merge(graphdef, params).kernels == kernels_lib.choose(cfg)
    images = jax.ShapeDtypeStruct((2, 99, 99, 3), jnp.float32)
    hlo = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x)).lower(params, images).as_text()
    assert ('feature_group_count = 2' in hlo) == (platform == 'gpu'), platform
    trees[platform] = jax.tree.map(lambda a: (a.shape, a.dtype), nnx.to_pure_dict(params))
  assert trees['cpu'] == trees['gpu']


def test_only_kernels_reads_the_backend_for_a_kernel():
  """jax.default_backend() is read in kernels.choose (and recorded in run.json), nowhere else."""
  allowed = {'model/kernels.py', 'record/tracking.py'}
  readers = set()
  for path in PACKAGE.rglob('*.py'):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Attribute) and node.attr == 'default_backend':
        readers.add(str(path.relative_to(PACKAGE)))
  assert readers <= allowed, readers - allowed
  assert 'model/kernels.py' in readers


def test_a_workdir_resumes_on_another_platform_and_from_before_the_field(tmp_path):
  """model.platform picks kernels, not a net: a run resumes (and evaluates) under another
  platform's kernels, and a workdir recorded before the field existed resumes too."""
  workdir = str(tmp_path)
  tracking.Workdir(workdir, get_config('quickstart'), []).close()
  path = tmp_path / 'config.json'
  saved = json.loads(path.read_text())
  assert saved['model']['platform'] == 'auto'
  del saved['model']['platform']
  path.write_text(json.dumps(saved))
  tracking.Workdir(workdir, get_config('quickstart'), []).close()
  tpu = get_config('quickstart')
  tpu.model.platform = 'tpu'
  tracking.Workdir(workdir, tpu, []).close()
  tracking.check_model_config(workdir, tpu)


# ----------------------------------------------------------------------- the same numbers
_CACHE = {}
TOLERANCE = 1e-5
NORM_TOLERANCE = 1e-2  # the full-shape net's gradients, in norm (see `_assert_close`)


def _inputs(net: str, batch: int):
  cfg = _model_config(net)
  rng = np.random.default_rng(3)
  size = cfg.input_size
  scale = 1.0 if net == 'quickstart' else 50.0
  images = (rng.standard_normal((batch, size, size, 3)) * scale).astype(np.float32)
  labels = rng.integers(0, cfg.num_classes, batch).astype(np.int32)
  return images, labels


def _run(cfg, mesh_shape, images, labels, key, seed=1):
  """(loss, gradients, test-time logits) of the net of `cfg` on a mesh of `mesh_shape`,
  through parallel.py's loss and logits functions, as the train and eval steps run it."""
  mesh = parallel.make_mesh(ml_collections.ConfigDict(dict(zip(('data', 'model'), mesh_shape))),
                            cfg, jax.devices()[:mesh_shape[0] * mesh_shape[1]])
  graphdef, params = nnx.split(model_lib.create_model(cfg, seed=seed), nnx.Param)
  loss_fn = parallel.make_loss_fn(graphdef, mesh, cfg)
  logits_fn = parallel.make_logits_fn(graphdef, mesh, cfg)

  @jax.jit
  def run(params, batch, key):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key, True)
    return loss, grads, logits_fn(params, batch['image'])

  batch = parallel.global_batch(mesh, {'image': images, 'label': labels})
  loss, grads, logits = run(parallel.shard_params(mesh, params), batch, key)
  return float(loss), jax.tree.map(np.asarray, nnx.to_pure_dict(grads)), np.asarray(logits)


def _references(net: str, batch: int):
  """The PyTorch net's and the CPU kernels' (one device) loss, gradients and logits."""
  if net in _CACHE:
    return _CACHE[net]
  cfg = _model_config(net, platform='cpu')
  images, labels = _inputs(net, batch)
  key = jax.random.key(9)
  model = model_lib.create_model(cfg, seed=1)
  call = model_lib.Call(train=True, dropout_key=key)
  width = {name: getattr(model, name).kernel.shape for name in ('fc6', 'fc7')}
  masks = {name: np.asarray(model._dropout(jnp.ones((batch, shape[0] * shape[2])), index,
                                           shape[0], call)) != 0
           for index, (name, shape) in enumerate(width.items())}
  params = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  torch_loss, torch_grads = torch_reference.loss_and_grads(params, cfg, images, labels,
                                                           masks=masks)
  torch_logits = torch_reference.logits(params, cfg, images)
  cpu = _run(cfg, (1, 1), images, labels, key)
  _CACHE[net] = (images, labels, key, (torch_loss, torch_grads, torch_logits), cpu)
  return _CACHE[net]


def _assert_close(got, want, what, tolerance, gradients='elementwise'):
  """Loss, logits and every gradient of `got` within `tolerance` of `want` (relative to the
  largest value of each); gradients='norm': each gradient's error in norm, relative to its norm.

  Gradients are not continuous in the parameters: a ReLU input near zero, or two values of a
  pooling window nearly equal, can fall on either side with a different rounding. In the
  full-shape net (1.3 million units per example) one such flip happens: a conv3 ReLU input, on
  different sides with the CPU's and the accelerators' LRN power forms (the same to 2e-7). It
  moves that channel's conv3 bias gradient by 0.4% and, through conv3, every gradient below it
  by up to 0.1% in norm; there the gradients are compared in norm, to 1% (a wrong kernel, layout
  or routing is off by far more), and the smaller nets, elementwise, to 1e-5.
  """
  loss, grads, logits = got
  want_loss, want_grads, want_logits = want
  np.testing.assert_allclose(loss, want_loss, rtol=tolerance, err_msg=f'{what}: loss')
  scale = np.max(np.abs(want_logits))
  assert scale > 1e-3
  np.testing.assert_allclose(logits, want_logits, atol=2 * tolerance * scale, rtol=0,
                             err_msg=f'{what}: logits')
  for layer, d in want_grads.items():
    for name, value in d.items():
      scale = np.max(np.abs(value))
      assert scale > 0, (what, layer, name)
      if gradients == 'norm':
        error = np.linalg.norm(grads[layer][name] - value) / np.linalg.norm(value)
        assert error < NORM_TOLERANCE, f'{what}: {layer}.{name} gradient off by {error:.1e}'
      else:
        np.testing.assert_allclose(grads[layer][name], value, atol=tolerance * scale, rtol=0,
                                   err_msg=f'{what}: {layer}.{name} gradient')


CASES = [
    # net, batch, model.platform, model.conv_impl, mesh (data, model)
    ('paper', 2, 'gpu', 'auto', (1, 1)),              # the full shape, grouped convolutions
    ('paper_small', 4, 'tpu', 'auto', (2, 2)),        # each column on its own device
    ('quickstart', 4, 'gpu', 'split', (1, 1)),        # the accelerators' kernels, split convs
    ('quickstart', 4, 'tpu', 'auto', (1, 2)),
]


@pytest.mark.parametrize('net,batch,platform,conv_impl,mesh_shape', CASES,
                         ids=['-'.join(map(str, c[:1] + c[2:])) for c in CASES])
def test_accelerator_kernels_match_cpu_kernels_and_pytorch(net, batch, platform, conv_impl,
                                                           mesh_shape):
  images, labels, key, torch_result, cpu = _references(net, batch)
  gradients = 'norm' if net == 'paper' else 'elementwise'
  _assert_close(cpu, torch_result, f'{net} cpu kernels vs PyTorch', TOLERANCE, gradients)
  cfg = _model_config(net, platform=platform, conv_impl=conv_impl)
  got = _run(cfg, mesh_shape, images, labels, key)
  what = f'{net} {platform} kernels, conv_impl={conv_impl}, mesh {mesh_shape}'
  _assert_close(got, torch_result, what + ' vs PyTorch', TOLERANCE, gradients)
  _assert_close(got, cpu, what + ' vs the cpu kernels', TOLERANCE, gradients)
