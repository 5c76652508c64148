"""The NNX AlexNet against PAPER.md's table, hand-computed sizes and an independent PyTorch net."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alexnet_jax.model import alexnet as model_lib
from configs.alexnet import get_config

torch_reference = pytest.importorskip('tests.torch_reference')


def _params_numpy(model):
  state = nnx.state(model, nnx.Param)
  return jax.tree.map(np.asarray, nnx.to_pure_dict(state))


def _training(dropout_key):
  """A training call of the net on one device (what the model's own dropout masks need)."""
  return model_lib.Call(train=True, dropout_key=dropout_key)


def _count(conv, fc, num_classes=1000, conv1_in=3, groups=(1, 2, 1, 2, 2)):
  """Parameters of an AlexNet from its widths, by hand: kernel sizes 11, 5, 3, 3, 3."""
  total, cin = 0, conv1_in
  for width, k, g in zip(conv, (11, 5, 3, 3, 3), groups):
    total += k * k * (cin // g) * width + width
    cin = width
  fan_in = 6 * 6 * cin
  for width in fc + [num_classes]:
    total += fan_in * width + width
    fan_in = width
  return total


def _abstract_model(model_config):
  """The net of a model config as shapes only (nnx.eval_shape): its structure without drawing
  its 61 million initial values (the tests that run the net draw theirs)."""
  return nnx.eval_shape(lambda: model_lib.create_model(model_config))


def test_parameter_counts_match_the_paper():
  def count(config_arg=None):
    return model_lib.count_parameters(_abstract_model(get_config(config_arg).model))

  assert _count([96, 256, 384, 384, 256], [4096, 4096]) == 60_965_224  # the paper's table
  assert count() == 60_965_224
  assert count('one_weird_trick') == 61_100_840 == _count(
      [64, 192, 384, 256, 256], [4096, 4096], groups=(1,) * 5)
  assert count('one_column') == _count([48, 128, 192, 192, 256], [4096, 4096], groups=(1,) * 5)


def test_parameters_carry_a_column_axis():
  m = get_config().model
  m.width = 0.25
  model = _abstract_model(m)
  shapes = jax.tree.map(lambda a: a.shape, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  # conv2/4/5 see their own column's 12/32/48 channels; conv3 and the fc layers see both.
  assert shapes['conv1']['kernel'] == (2, 11, 11, 3, 12)
  assert shapes['conv2']['kernel'] == (2, 5, 5, 12, 32)
  assert shapes['conv3']['kernel'] == (2, 3, 3, 64, 48)
  assert shapes['conv4']['kernel'] == (2, 3, 3, 48, 48)
  assert shapes['conv5']['kernel'] == (2, 3, 3, 48, 32)
  assert shapes['fc6']['kernel'] == (2, 6 * 6 * 64, 512)
  assert shapes['fc8']['kernel'] == (2, 1024, 500)
  assert all(s['bias'][0] == 2 for s in shapes.values())


@pytest.mark.parametrize('size', [224, 227])
def test_spatial_sizes(size):
  m = get_config().model
  m.input_size = size
  captured = {}
  jax.eval_shape(lambda x: model_lib.create_model(m)(x, capture=captured),
                 jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  got = {k: v.shape[1:3] for k, v in captured.items() if v.ndim == 4}
  # (224 + 3 - 11) / 4 + 1 = 55 (original code); (227 - 11) / 4 + 1 = 55 (Caffe).
  assert got == {'conv1': (55, 55), 'pool1': (27, 27), 'conv2': (27, 27), 'pool2': (13, 13),
                 'conv3': (13, 13), 'conv4': (13, 13), 'conv5': (13, 13), 'pool5': (6, 6)}


def test_initialization_follows_the_paper_and_the_code():
  params = _params_numpy(model_lib.create_model(get_config().model))
  for name in ('conv1', 'conv3', 'fc6', 'fc8'):
    assert abs(params[name]['kernel'].std() - 0.01) < 5e-4
  for name in ('conv2', 'conv4', 'conv5', 'fc6', 'fc7'):
    assert np.all(params[name]['bias'] == 1.0)
  for name in ('conv1', 'conv3', 'fc8'):
    assert np.all(params[name]['bias'] == 0.0)
  m = get_config().model
  m.init = 'code'
  params = _params_numpy(model_lib.create_model(m))
  assert abs(params['conv4']['kernel'].std() - 0.03) < 1e-3
  assert abs(params['conv2']['kernel'].std() - 0.01) < 5e-4


VARIANTS = {
    'paper': {},
    'paper-227': {'input_size': 227},
    'paper-lrn-code-placement': {'lrn_placement': 'code'},
    'paper-lrn-paper-alpha': {'lrn_alpha_convention': 'paper'},
    'no-lrn-no-dropout': {'lrn': False, 'dropout': 0.0},
    'non-overlapping-pool': {'overlap_pool': False},
    'tanh': {'activation': 'tanh'},
    'one-column': {'columns': 1},
    'grouped-conv': {'conv_impl': 'grouped', 'conv1_impl': 'conv'},
    'one-weird-trick': {'variant': 'one_weird_trick', 'columns': 1, 'lrn': False},
    # torchvision's net has no LRN: model.lrn=True must not add it.
    'one-weird-trick-lrn-flag-on': {'variant': 'one_weird_trick', 'columns': 1, 'lrn': True},
    'one-weird-trick-inverted': {'variant': 'one_weird_trick', 'columns': 1,
                                 'dropout_mode': 'inverted'},
}


@pytest.mark.parametrize('name', list(VARIANTS))
def test_forward_matches_independent_pytorch_net(name):
  m = get_config().model
  m.width = 0.25
  m.init = 'he'
  m.bias_init = 0.1
  m.update(VARIANTS[name])
  model = model_lib.create_model(m, seed=1)
  rng = np.random.default_rng(0)
  images = (rng.standard_normal((2, m.input_size, m.input_size, 3)) * 50).astype(np.float32)
  ours = np.asarray(model(jnp.asarray(images)))
  ref = torch_reference.logits(_params_numpy(model), m, images)
  assert ours.shape == (2, 1000)
  scale = np.max(np.abs(ref))
  assert scale > 1e-3
  np.testing.assert_allclose(ours, ref, atol=2e-5 * scale, rtol=1e-4)


@pytest.mark.parametrize('variant', ['paper', 'one_weird_trick'])
@pytest.mark.parametrize('mode', ['paper', 'inverted'])
def test_training_dropout_placement_matches_pytorch(variant, mode):
  """Training-time dropout where each net puts it: the paper drops the outputs of fc6 and fc7,
  torchvision's one_weird_trick their inputs. The PyTorch net applies the same 0/1 masks."""
  m = get_config(variant).model
  m.width = 0.25
  m.init, m.bias_init = 'he', 0.1
  m.dropout_mode = mode
  model = model_lib.create_model(m, seed=4)
  rng = np.random.default_rng(7)
  images = jnp.asarray((rng.standard_normal((2, 224, 224, 3)) * 50).astype(np.float32))
  shapes = {}
  model(images, capture=shapes)
  key = jax.random.key(11)
  dropped = {'fc6': 'pool5', 'fc7': 'fc6'} if variant == 'one_weird_trick' else {
      'fc6': 'fc6', 'fc7': 'fc7'}
  masks = {}
  for index, name in enumerate(('fc6', 'fc7')):
    ones = jnp.ones(shapes[dropped[name]].shape)
    # The model's own mask for this layer (the same key and column folding as in __call__).
    mask = np.asarray(model._dropout(ones, index, m.columns, _training(key))) != 0
    assert 0.4 < mask.mean() < 0.6
    masks[name] = mask.reshape(mask.shape[0], -1)
  ours = np.asarray(model(images, train=True, dropout_key=key))
  ref = torch_reference.logits(_params_numpy(model), m, np.asarray(images), masks=masks)
  scale = np.max(np.abs(ref))
  assert scale > 1e-3
  np.testing.assert_allclose(ours, ref, atol=2e-5 * scale, rtol=1e-4)


GRADIENT_VARIANTS = {
    'paper': {},
    'paper-lrn-code-placement': {'lrn_placement': 'code'},
    'non-overlapping-pool': {'overlap_pool': False},
    'one-weird-trick': {'variant': 'one_weird_trick', 'columns': 1, 'lrn': False},
}


@pytest.mark.parametrize('name', list(GRADIENT_VARIANTS))
def test_training_gradients_match_pytorch_autograd(name):
  """The gradient of the training loss (dropout on, the model's own masks) for every parameter,
  against PyTorch's autograd of the independent net: the backward passes written out here (LRN,
  max-pooling) and the layer layouts chosen for speed must give PyTorch's numbers."""
  m = get_config().model
  m.width = 0.25
  m.init, m.bias_init = 'he', 0.1
  m.input_size = 99  # small and odd: conv1's extra padding and pooling's edges both matter
  m.num_classes = 10
  m.update(GRADIENT_VARIANTS[name])
  model = model_lib.create_model(m, seed=5)
  graphdef, params = nnx.split(model, nnx.Param)
  rng = np.random.default_rng(8)
  images = jnp.asarray((rng.standard_normal((3, 99, 99, 3)) * 50).astype(np.float32))
  labels = np.array([1, 7, 3])
  key = jax.random.key(12)
  shapes = {}
  model(images, capture=shapes)
  dropped = {'fc6': 'pool5', 'fc7': 'fc6'} if m.variant == 'one_weird_trick' else {
      'fc6': 'fc6', 'fc7': 'fc7'}
  masks = {n: np.asarray(model._dropout(jnp.ones(shapes[dropped[n]].shape), i, m.columns,
                                        _training(key))).reshape(3, -1) != 0
           for i, n in enumerate(('fc6', 'fc7'))}

  def loss(p):
    logits = nnx.merge(graphdef, p)(images, train=True, dropout_key=key)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

  ours_loss, grads = jax.jit(jax.value_and_grad(loss))(params)
  ref_loss, ref = torch_reference.loss_and_grads(_params_numpy(model), m, np.asarray(images),
                                                 labels, masks=masks)
  np.testing.assert_allclose(float(ours_loss), ref_loss, rtol=1e-5)
  grads = jax.tree.map(np.asarray, nnx.to_pure_dict(grads))
  for layer, d in ref.items():
    for what, want in d.items():
      scale = np.max(np.abs(want))
      assert scale > 0, (layer, what)
      np.testing.assert_allclose(grads[layer][what], want, atol=1e-5 * scale, rtol=0,
                                 err_msg=f'{layer}.{what}')


def test_conv_implementations_agree():
  m = get_config().model
  m.width = 0.25
  images = jnp.asarray(np.random.default_rng(5).standard_normal((2, 224, 224, 3)), jnp.float32)
  outputs = []
  for conv_impl, conv1_impl in [('split', 'im2col'), ('grouped', 'conv'), ('split', 'conv')]:
    m.conv_impl, m.conv1_impl = conv_impl, conv1_impl
    outputs.append(np.asarray(model_lib.create_model(m, seed=2)(images)))
  for other in outputs[1:]:
    np.testing.assert_allclose(other, outputs[0], rtol=1e-4, atol=1e-6)


def test_dropout_modes_agree_in_expectation():
  m = get_config().model
  m.width = 0.25
  h = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, (4, 1024)), jnp.float32)
  for mode in ('paper', 'inverted'):
    m.dropout_mode = mode
    model = model_lib.create_model(m)
    test = model._dropout(h, 0, 2, model_lib.Call(train=False))
    keys = jax.random.split(jax.random.key(0), 4000)
    samples = jax.vmap(lambda k: model._dropout(h, 0, 2, _training(k)))(keys)
    kept = np.mean(np.asarray(samples) != 0)
    assert abs(kept - 0.5) < 0.01
    mean = np.asarray(samples).mean(0)
    # 4000 Bernoulli(0.5) samples: relative standard error 1/sqrt(4000) ~ 1.6%.
    np.testing.assert_allclose(mean, np.asarray(test), rtol=0.08)
    if mode == 'paper':
      np.testing.assert_allclose(test, 0.5 * h)  # the original code's test-time halving
      assert set(np.unique(np.asarray(samples)[0] / np.asarray(h))) <= {0.0, 1.0}
    else:
      np.testing.assert_allclose(test, h)


def test_bfloat16_compute_stays_close_and_keeps_float32_params():
  m = get_config().model
  m.width = 0.25
  m.init, m.bias_init = 'he', 0.1
  images = jnp.asarray(np.random.default_rng(6).standard_normal((2, 224, 224, 3)) * 50,
                       jnp.float32)
  f32 = model_lib.create_model(m, seed=3)(images)
  m.dtype = 'bfloat16'
  model16 = model_lib.create_model(m, seed=3)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model16, nnx.Param)))
  b16 = model16(images)
  assert b16.dtype == jnp.float32
  rel = np.linalg.norm(np.asarray(b16 - f32)) / np.linalg.norm(np.asarray(f32))
  assert rel < 0.05


def test_invalid_configs_fail_with_what_to_change():
  m = get_config('one_weird_trick').model
  m.columns = 2
  with pytest.raises(ValueError, match='columns=1'):
    model_lib.create_model(m)
  m = get_config().model
  m.num_classes = 101
  with pytest.raises(ValueError, match='columns'):
    model_lib.create_model(m)
