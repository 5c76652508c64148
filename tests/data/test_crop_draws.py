"""crop_draws: the batch-level NumPy draws are exactly TensorFlow's per-example stateless draws
(image_ops.train_crop's), for the full int64 range of both seed parts, and the crop they name is
the crop train_crop returns."""

import itertools

import numpy as np
import pytest

from alexnet_jax.data import crop_draws, image_ops
from alexnet_jax.data.tf_setup import tf

EDGES = [0, 1, 2**32 - 1, 2**32, 2**62, 2**63 - 1]
SIZES = [(256, 224), (256, 227), (64, 56), (10, 10)]


def _seeds(n=2000, seed=0):
  """int64 [n + 36, 2]: every pair of edge values, then random pairs (positions small and large)."""
  rng = np.random.default_rng(seed)
  edges = np.array(list(itertools.product(EDGES, EDGES)), np.int64)
  base = rng.integers(0, 2**63 - 1, n, dtype=np.int64, endpoint=True)
  small = rng.integers(0, 10**7, n // 2, dtype=np.int64)
  large = rng.integers(0, 2**63 - 1, n - n // 2, dtype=np.int64, endpoint=True)
  return np.concatenate([edges, np.stack([base, np.concatenate([small, large])], 1)])


def _tf_map(fn, seeds):
  """fn applied to each seed [2] in a tf.data map, as the pipeline calls train_crop; stacked."""
  ds = tf.data.Dataset.from_tensor_slices(seeds).map(fn).batch(len(seeds))
  return tf.nest.map_structure(np.asarray, next(iter(ds)))


def _tf_draws(seeds, r, s, random_crop, mirror):
  """int32 [n, 3] by TensorFlow: train_crop's draws, line for line."""
  def draw(seed):
    split = tf.random.experimental.stateless_split(seed, 4)
    if random_crop:
      offset_y = tf.random.stateless_uniform([], split[0], 0, r - s + 1, dtype=tf.int32)
      offset_x = tf.random.stateless_uniform([], split[1], 0, r - s + 1, dtype=tf.int32)
    else:
      offset_y = offset_x = tf.constant((r - s) // 2, tf.int32)
    flip = tf.random.stateless_uniform([], split[2]) < 0.5 if mirror else tf.constant(False)
    return tf.stack([offset_y, offset_x, tf.cast(flip, tf.int32)])
  return _tf_map(draw, seeds)


@pytest.fixture(scope='module')
def seeds():
  return _seeds()


@pytest.mark.parametrize('random_crop,mirror', [(True, True), (True, False), (False, True),
                                                (False, False)])
@pytest.mark.parametrize('r,s', SIZES)
def test_draws_equal_tensorflow(seeds, r, s, random_crop, mirror):
  got = crop_draws.train_crop_draws(seeds[:, 0], seeds[:, 1], r, s, random_crop, mirror)
  assert got.dtype == np.int32 and got.shape == (len(seeds), 3)
  np.testing.assert_array_equal(got, _tf_draws(seeds, r, s, random_crop, mirror))


def test_split_equals_tensorflow(seeds):
  """The intermediate seeds: stateless_split's int64 pairs, two Philox words to an int64."""
  want = _tf_map(lambda seed: tf.random.experimental.stateless_split(seed, 4), seeds)
  bits = seeds.view(np.uint64)
  words = crop_draws._split(crop_draws._seed_words(bits[:, 0], bits[:, 1]), range(4))
  words = words.astype(np.uint64)
  got = np.stack([words[0] | words[1] << 32, words[2] | words[3] << 32], -1).view(np.int64)
  np.testing.assert_array_equal(got.transpose(1, 0, 2), want)


def test_base_seed_forms():
  """An int base seed, an int64 or uint64 array of one, or one per example: the same draws."""
  positions = np.array([0, 5, 2**40, 2**63 - 1], np.int64)
  want = crop_draws.train_crop_draws(np.full(4, 2**63 - 1, np.int64), positions, 256, 224,
                                     True, True)
  for base in (2**63 - 1, np.int64(2**63 - 1), np.array(2**63 - 1, np.uint64)):
    np.testing.assert_array_equal(
        crop_draws.train_crop_draws(base, positions, 256, 224, True, True), want)


def test_centre_and_no_flip_without_draws():
  got = crop_draws.train_crop_draws(7, np.arange(5, dtype=np.int64), 256, 227, False, False)
  np.testing.assert_array_equal(got, np.tile([[14, 14, 0]], (5, 1)))


@pytest.mark.parametrize('random_crop,mirror', [(True, True), (False, True)])
def test_draws_give_train_crops(random_crop, mirror):
  """The window the draws name, cut from the fully decoded square and mirrored when flip is
  1, is what train_crop returns (it decodes the window alone)."""
  r, s = 256, 224
  image = np.random.default_rng(1).integers(0, 256, (r, r, 3), dtype=np.uint8)
  jpeg = tf.io.encode_jpeg(image, quality=100, chroma_downsampling=False)
  square = tf.io.decode_jpeg(jpeg, channels=3).numpy()
  seeds = np.array([[0, 0], [1, 2], [2**63 - 1, 2**63 - 1], [2**32, 2**32 - 1], [12345, 7],
                    [2**62, 99], [31337, 2**33 + 5], [5, 1000003]], np.int64)
  draws = crop_draws.train_crop_draws(seeds[:, 0], seeds[:, 1], r, s, random_crop, mirror)
  assert len({tuple(d) for d in draws}) > 1
  for seed, (y, x, flip) in zip(seeds, draws):
    want = square[y:y + s, x:x + s]
    got = image_ops.train_crop(jpeg, tf.constant(seed), r, s, random_crop, mirror).numpy()
    np.testing.assert_array_equal(got, want[:, ::-1] if flip else want)
