"""The float work on the device against NumPy versions of the paper's formula (section 4.1), for
the same draws: colour noise, mean, input scale. No TensorFlow in this file."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from alexnet_jax.data import device_preprocess
from configs import alexnet

# The constants as published, typed here rather than read from the code (PAPER.md, "Data").
# The original 2012 code: standard deviations (sqrt of eigenvalues) of ImageNet RGB in 0-255
# units, and eigenvectors as the COLUMNS of V (rows R, G, B).
PAPER_S = np.array([19.72, 37.09, 121.78])
PAPER_V = np.array([[0.418, -0.713, -0.564],
                    [-0.817, -0.024, -0.576],
                    [0.397, 0.701, -0.592]])
# fb.resnet.torch (datasets/imagenet.lua, transforms.lua `Lighting`): eigval and eigvec of 0-1
# RGB; Lighting adds rgb = eigvec * (alpha .* eigval), alpha ~ N(0, alphastd = 0.1), to images
# in 0-1 units, i.e. 255 times that in the 0-255 units used here.
FB_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
FB_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                      [-0.5808, -0.0045, -0.8140],
                      [-0.5836, -0.6948, 0.4203]])
# The noise each per-image coefficient vector `a` (std 1 draws) gives, 0-255 units.
PUBLISHED_NOISE = {
    'code': lambda a, std: PAPER_V @ (std * a * PAPER_S),
    'fb_resnet': lambda a, std: 255.0 * (FB_EIGVEC @ (std * a * FB_EIGVAL)),
}


def _data_config(**overrides):
  config = alexnet.get_config().data
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def test_the_pca_constants_are_the_published_ones():
  scales, vectors = device_preprocess.pca_constants('code', None)
  np.testing.assert_array_equal(scales, PAPER_S)
  np.testing.assert_array_equal(vectors, PAPER_V)
  scales, vectors = device_preprocess.pca_constants('fb_resnet', None)
  np.testing.assert_allclose(scales, 255.0 * FB_EIGVAL)
  np.testing.assert_array_equal(vectors, FB_EIGVEC)
  # Columns are unit eigenvectors, the largest component is luminance (all channels alike).
  for v in (PAPER_V, FB_EIGVEC):
    np.testing.assert_allclose(np.linalg.norm(v, axis=0), 1, atol=2e-3)
  assert np.ptp(np.abs(PAPER_V[:, 2])) < 0.03 and np.ptp(np.abs(FB_EIGVEC[:, 0])) < 0.02


def test_the_draws_are_keyed_by_seed_step_and_example():
  draws = np.asarray(device_preprocess.noise_coefficients(5, 11, 64))
  # The documented key: fold_in(fold_in(fold_in(key(seed), NOISE_STREAM), step), example).
  base = jax.random.fold_in(jax.random.key(5), device_preprocess.NOISE_STREAM)
  for i in (0, 1, 63):
    want = jax.random.normal(jax.random.fold_in(jax.random.fold_in(base, 11), i), (3,))
    np.testing.assert_array_equal(draws[i], np.asarray(want))
  # An example's draws do not depend on the batch around it; other steps and seeds differ.
  np.testing.assert_array_equal(np.asarray(device_preprocess.noise_coefficients(5, 11, 8)),
                                draws[:8])
  assert not np.allclose(np.asarray(device_preprocess.noise_coefficients(5, 12, 64)), draws)
  assert not np.allclose(np.asarray(device_preprocess.noise_coefficients(6, 11, 64)), draws)
  assert len({tuple(np.round(d, 5)) for d in draws}) == 64


@pytest.mark.parametrize('name', ['code', 'fb_resnet'])
def test_colour_noise_is_the_published_formula(name):
  # The config's defaults (pca_noise='code', pca_std=0.1) or fb.resnet.torch's constants,
  # resolved as training resolves them; mean and scale off, so the output is crop + noise.
  assert (_data_config().pca_noise, _data_config().pca_std) == ('code', 0.1)
  transform = device_preprocess.input_transform(_data_config(mean='none', pca_noise=name), 4,
                                                None)
  n, seed, step = 3000, 3, 17
  rng = np.random.default_rng(0)
  crops = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
  out = np.asarray(jax.jit(lambda x: device_preprocess.train_inputs(x, transform, seed, step))(
      crops), np.float64)
  draws = np.asarray(device_preprocess.noise_coefficients(seed, step, n), np.float64)
  # Exactly the published formula, for each image's coefficients: one shift per image.
  expected = crops + np.stack([PUBLISHED_NOISE[name](a, 0.1) for a in draws])[:, None, None, :]
  np.testing.assert_allclose(out, expected, atol=2e-3)
  noise = out[:, 0, 0, :] - crops[:, 0, 0, :]
  # And its covariance, built from the typed constants.
  if name == 'code':
    covariance = PAPER_V @ np.diag((0.1 * PAPER_S) ** 2) @ PAPER_V.T
  else:
    covariance = 255.0 ** 2 * FB_EIGVEC @ np.diag((0.1 * FB_EIGVAL) ** 2) @ FB_EIGVEC.T
  got = np.cov(noise, rowvar=False)
  # Sampling error of a covariance from n draws: ~ sqrt(2 / n) of the largest variance.
  assert np.abs(got - covariance).max() < 0.1 * np.abs(covariance).max()
  np.testing.assert_allclose(noise.mean(0), 0, atol=0.1 * np.sqrt(covariance.max()))
  if name == 'code':  # the original code's largest component (luminance): std 0.1 * 121.78
    assert abs(np.sqrt(np.linalg.eigvalsh(got)[-1]) - 12.178) < 0.8
  else:  # fb.resnet.torch's: 0.1 * 0.2175 * 255 = 5.55, about half as strong
    assert abs(np.sqrt(np.linalg.eigvalsh(got)[-1]) - 5.546) < 0.4


def test_mean_subtraction_noise_and_input_scale_together():
  rng = np.random.default_rng(2)
  crops = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
  mean_image = rng.uniform(0, 255, (8, 8, 3)).astype(np.float32)
  stats = {'mean_image': mean_image}
  transform = device_preprocess.input_transform(
      _data_config(mean='image', input_scale=0.5), 4, stats)
  draws = np.asarray(device_preprocess.noise_coefficients(0, 3, 5), np.float64)
  noise = np.stack([PAPER_V @ (0.1 * a * PAPER_S) for a in draws])[:, None, None, :]
  # The original code: the mean image's central crop, whatever the crop's place or mirror.
  want = (crops + noise - mean_image[2:6, 2:6]) * 0.5
  got = np.asarray(device_preprocess.train_inputs(jnp.asarray(crops), transform, 0, 3))
  np.testing.assert_allclose(got, want, atol=1e-3)
  # Evaluation: no noise, same mean and scale.
  views = crops[:, None]
  got = np.asarray(device_preprocess.eval_inputs(jnp.asarray(views), transform))
  np.testing.assert_allclose(got, (views - mean_image[2:6, 2:6]) * 0.5, atol=1e-4)
  channel = device_preprocess.input_transform(
      _data_config(mean='channel', channel_mean=(10.0, 20.0, 30.0), pca_noise='none'), 4, None)
  np.testing.assert_allclose(np.asarray(device_preprocess.train_inputs(crops, channel, 0, 0)),
                             crops - np.array([10.0, 20.0, 30.0]), atol=1e-4)
  none = device_preprocess.input_transform(_data_config(mean='none', pca_noise='none'), 4, None)
  np.testing.assert_array_equal(np.asarray(device_preprocess.eval_inputs(crops, none)), crops)


def test_bad_settings_say_what_to_write():
  with pytest.raises(ValueError, match='three numbers'):
    device_preprocess.input_transform(_data_config(mean='channel', channel_mean=(1.0,)), 4,
                                      None)
  with pytest.raises(ValueError, match="'code', 'fb_resnet'"):
    device_preprocess.input_transform(_data_config(pca_noise='pca'), 4, None)
  with pytest.raises(ValueError, match="'image', 'channel' or 'none'"):
    device_preprocess.input_transform(_data_config(mean='pixel'), 4, None)


def test_the_same_numbers_whatever_the_batch_sharding():
  transform = device_preprocess.input_transform(_data_config(mean='none'), 8, None)
  crops = np.random.default_rng(5).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
  step = jax.jit(lambda x: device_preprocess.train_inputs(x, transform, 1, 2))
  whole = np.asarray(step(crops))
  mesh = jax.make_mesh((4, 1), ('data', 'model'),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)
  split = jax.device_put(crops, NamedSharding(mesh, P('data')))
  np.testing.assert_array_equal(np.asarray(step(split)), whole)
