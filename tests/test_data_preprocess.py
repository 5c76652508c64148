"""The image ops against hand-computed expectations (Krizhevsky et al. 2012, sections 2 and 4.1)."""

import dataclasses
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from alexnet_jax.data import pipeline, preprocess  # noqa: E402
from data_testlib import data_config, data_encode  # noqa: E402

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


def _p(**kw):
  base = dict(image_size=224, resize_size=256, resize_method='bilinear', antialias=True,
              random_crop=True, mirror=True, fused_decode_crop=False,
              mean=np.zeros([], np.float32), pca_scales=None, pca_vectors=None, pca_std=0.1,
              input_scale=1.0, truncated_jpeg_fraction=0.0)
  base.update(kw)
  return preprocess.Preprocessing(**base)


def _train_batch(image_bytes, p, n):
  """n training augmentations of one image, example seeds (7, 0..n-1)."""
  ds = tf.data.Dataset.range(n).map(
      lambda i: preprocess.train_image(tf.constant(image_bytes), tf.stack([tf.constant(7, tf.int64), i]), p))
  return np.stack(list(ds.as_numpy_iterator()))


def _coordinate_image(size):
  """R = column, G = row (0..size-1, so size <= 256), B = 50."""
  y, x = np.mgrid[0:size, 0:size]
  return np.stack([x, y, np.full_like(x, 50)], -1).astype(np.uint8)


def test_random_crops_are_inside_the_image_and_mirrored_half_the_time():
  image = _coordinate_image(256)
  crops = _train_batch(data_encode(image, 'PNG'), _p(), 300)  # PNG: exact pixels
  assert crops.shape == (300, 224, 224, 3) and crops.dtype == np.float32
  offsets, mirrored = set(), 0
  for crop in crops:
    oy = int(crop[0, 0, 1])
    is_mirrored = crop[0, 0, 0] > crop[0, -1, 0]
    ox = int(crop[0, -1, 0] if is_mirrored else crop[0, 0, 0])
    assert 0 <= oy <= 32 and 0 <= ox <= 32, 'the crop leaves the 256x256 square'
    window = image[oy:oy + 224, ox:ox + 224].astype(np.float32)
    np.testing.assert_array_equal(crop, window[:, ::-1] if is_mirrored else window)
    offsets.add((oy, ox))
    mirrored += is_mirrored
  assert 0.5 - 0.1 < mirrored / 300 < 0.5 + 0.1  # binomial(300, 0.5): 0.1 is > 3 sigma
  assert len(offsets) > 200  # 33 x 33 possible offsets: crops really move


def test_fused_decode_and_crop_crops_inside_and_mirrors_half_the_time():
  # The default training path: the crop's window of a JPEG. A coordinate image at the resize
  # size (so no rescaling): R = column, G = row; JPEG quality 100 without chroma subsampling
  # keeps them within a few units.
  image = _coordinate_image(256)
  p = _p(fused_decode_crop=True)
  jpeg = data_encode(image, quality=100, subsampling=0)
  assert tf.io.is_jpeg(jpeg)
  crops = _train_batch(jpeg, p, 300)
  offsets, mirrored = set(), 0
  for crop in crops:
    is_mirrored = crop[112, 0, 0] > crop[112, -1, 0]
    row = crop[112, ::-1, 0] if is_mirrored else crop[112, :, 0]
    column = crop[:, 112, 1]
    ox = int(round(np.median(row - np.arange(224))))
    oy = int(round(np.median(column - np.arange(224))))
    # (JPEG's rounding can shift the estimate by a unit or two)
    assert -2 <= oy <= 34 and -2 <= ox <= 34, 'the crop leaves the 256x256 square'
    np.testing.assert_allclose(row, ox + np.arange(224), atol=3)
    np.testing.assert_allclose(column, oy + np.arange(224), atol=3)
    offsets.add((oy, ox))
    mirrored += is_mirrored
  assert 0.5 - 0.1 < mirrored / 300 < 0.5 + 0.1  # binomial(300, 0.5): 0.1 is > 3 sigma
  assert len(offsets) > 200


def test_fused_decode_and_crop_takes_the_window_of_the_resized_square():
  # A 512x384 JPEG: the central 384x384 square shrinks to 192 (scale 2); R encodes x in the
  # resized square, G encodes y. Wider than tall, so the square starts at column 64.
  h, w, r, s = 384, 512, 192, 160
  y, x = np.mgrid[0:h, 0:w]
  image = np.stack([(x - 64) / 2, y / 2, np.full_like(x, 50.0)], -1)
  image = np.clip(image, 0, 255).astype(np.uint8)
  p = _p(image_size=s, resize_size=r, fused_decode_crop=True)
  crops = _train_batch(data_encode(image, quality=100), p, 40)
  for crop in crops:
    row = crop[s // 2, :, 0]
    if row[0] > row[-1]:  # mirrored
      row = row[::-1]
    ox = row[0]
    oy = crop[0, s // 2, 1]
    assert -1 <= ox <= r - s + 1 and -1 <= oy <= r - s + 1
    np.testing.assert_allclose(row, ox + np.arange(s), atol=2.5)
    np.testing.assert_allclose(crop[:, s // 2, 1], oy + np.arange(s), atol=2.5)


def test_the_pca_constants_are_the_published_ones():
  scales, vectors = preprocess.pca_constants('code', None)
  np.testing.assert_array_equal(scales, PAPER_S)
  np.testing.assert_array_equal(vectors, PAPER_V)
  scales, vectors = preprocess.pca_constants('fb_resnet', None)
  np.testing.assert_allclose(scales, 255.0 * FB_EIGVAL)
  np.testing.assert_array_equal(vectors, FB_EIGVEC)
  # Columns are unit eigenvectors, the largest component is luminance (all channels alike).
  for v in (PAPER_V, FB_EIGVEC):
    np.testing.assert_allclose(np.linalg.norm(v, axis=0), 1, atol=2e-3)
  assert np.ptp(np.abs(PAPER_V[:, 2])) < 0.03 and np.ptp(np.abs(FB_EIGVEC[:, 0])) < 0.02


def _noise_and_coefficients(p, n):
  """The colour shift train_image adds to a grey image, and the N(0, 1) draws behind it."""
  grey = np.full((8, 8, 3), 128, np.uint8)
  out = _train_batch(data_encode(grey, 'PNG'), p, n)
  assert np.allclose(out, out[:, :1, :1, :], atol=1e-4)  # one shift per image, every pixel
  draws = np.stack([
      tf.random.stateless_normal([3], tf.random.experimental.stateless_split(
          tf.constant([7, i], tf.int64), 4)[3]).numpy() for i in range(n)])
  return out[:, 0, 0, :] - 128.0, draws


@pytest.mark.parametrize('name', ['code', 'fb_resnet'])
def test_colour_noise_is_the_published_formula(name):
  # The config's defaults (pca_noise='code', pca_std=0.1) or fb.resnet.torch's constants,
  # resolved by the pipeline as training resolves them.
  config = data_config(mean='none')
  assert (data_config().pca_noise, data_config().pca_std) == ('code', 0.1)
  config.pca_noise = name
  resolved = pipeline.preprocessing(config, 224, None)
  p = dataclasses.replace(resolved, image_size=4, resize_size=8, random_crop=False,
                          mirror=False, fused_decode_crop=False)
  noise, draws = _noise_and_coefficients(p, 3000)
  # Exactly the published formula, for each image's coefficients.
  expected = np.stack([PUBLISHED_NOISE[name](a, 0.1) for a in draws])
  np.testing.assert_allclose(noise, expected, atol=2e-3)
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


def test_ten_views_are_the_corners_the_centre_and_their_mirrors():
  image = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
  views = preprocess.eval_views(tf.constant(data_encode(image, 'PNG')), 10, _p()).numpy()
  f = image.astype(np.float32)
  five = [f[:224, :224], f[:224, 32:], f[32:, :224], f[32:, 32:], f[16:240, 16:240]]
  expected = np.stack(five + [v[:, ::-1] for v in five])
  assert views.shape == (10, 224, 224, 3)
  np.testing.assert_array_equal(views, expected)
  centre = preprocess.eval_views(tf.constant(data_encode(image, 'PNG')), 1, _p()).numpy()
  np.testing.assert_array_equal(centre, f[None, 16:240, 16:240])


def test_shorter_side_is_resized_and_the_central_square_kept():
  # 100 x 300 image of three vertical bands; the central square is the middle band only.
  image = np.zeros((100, 300, 3), np.uint8)
  image[:, 100:200] = 200
  square = preprocess.central_square(tf.constant(data_encode(image, 'PNG')), _p(resize_size=50))
  np.testing.assert_allclose(square.numpy(), 200, atol=1e-3)
  assert square.shape == (50, 50, 3)


def test_mean_subtraction_and_input_scale():
  image = np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)
  mean_image = np.random.default_rng(3).uniform(0, 255, (8, 8, 3)).astype(np.float32)
  p = _p(image_size=4, resize_size=8, random_crop=False, mirror=False,
         mean=mean_image[2:6, 2:6], input_scale=0.5)
  out = _train_batch(data_encode(image, 'PNG'), p, 1)[0]
  np.testing.assert_allclose(out, (image[2:6, 2:6] - mean_image[2:6, 2:6]) * 0.5, atol=1e-4)
  p = _p(image_size=4, resize_size=8, random_crop=False, mirror=False,
         mean=np.array([10.0, 20.0, 30.0], np.float32))
  out = _train_batch(data_encode(image, 'PNG'), p, 1)[0]
  np.testing.assert_allclose(out, image[2:6, 2:6] - np.array([10.0, 20.0, 30.0]), atol=1e-4)
