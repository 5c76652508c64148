"""The host's image ops against hand-computed expectations (Krizhevsky et al. 2012, sections 2
and 4.1): making a stored square, and the crops and views taken from it."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from alexnet_jax.data import image_ops  # noqa: E402
from data_testlib import data_encode, data_random_image  # noqa: E402


def _squaring(**kw):
  base = dict(resize_size=256, resize_method='bilinear', antialias=True, quality=90,
              truncated_jpeg_fraction=0.0)
  base.update(kw)
  return image_ops.Squaring(**base)


def _coordinate_image(size):
  """R = column, G = row (0..size-1, so size <= 256), B = 50."""
  y, x = np.mgrid[0:size, 0:size]
  return np.stack([x, y, np.full_like(x, 50)], -1).astype(np.uint8)


def _crops(square_jpeg, n, image_size=224, resize_size=256):
  """n training crops of one stored square, example seeds (7, 0..n-1)."""
  ds = tf.data.Dataset.range(n).map(lambda i: image_ops.train_crop(
      tf.constant(square_jpeg), tf.stack([tf.constant(7, tf.int64), i]), resize_size,
      image_size, True, True))
  return np.stack(list(ds.as_numpy_iterator()))


def test_random_crops_are_inside_the_square_and_mirrored_half_the_time():
  # A stored square without chroma subsampling: its windows decode exactly as the whole does.
  jpeg = data_encode(_coordinate_image(256), quality=100, subsampling=0)
  full = tf.io.decode_jpeg(jpeg).numpy()
  crops = _crops(jpeg, 300)
  assert crops.shape == (300, 224, 224, 3) and crops.dtype == np.uint8
  offsets, mirrored = set(), 0
  for crop in crops:
    # Roughly where it is (R = column, G = row, to JPEG's error), then exactly: one window of
    # the square, at an offset in 0..32, mirrored or not, is the crop.
    is_mirrored = crop[112, 0, 0] > crop[112, -1, 0]
    row = crop[112, ::-1, 0] if is_mirrored else crop[112, :, 0]
    ox = int(round(np.median(row.astype(int) - np.arange(224))))
    oy = int(round(np.median(crop[:, 112, 1].astype(int) - np.arange(224))))
    found = [(y, x) for y in range(max(0, oy - 2), min(32, oy + 2) + 1)
             for x in range(max(0, ox - 2), min(32, ox + 2) + 1)
             if np.array_equal(crop, full[y:y + 224, x:x + 224][:, ::-1 if is_mirrored else 1])]
    assert len(found) == 1, 'not a window of the 256x256 square'
    oy, ox = found[0]
    offsets.add((oy, ox))
    mirrored += is_mirrored
  assert 0.5 - 0.1 < mirrored / 300 < 0.5 + 0.1  # binomial(300, 0.5): 0.1 is > 3 sigma
  assert len(offsets) > 200  # 33 x 33 possible offsets: crops really move


def test_centre_crop_without_mirror():
  jpeg = data_encode(_coordinate_image(256), quality=100, subsampling=0)
  crop = image_ops.train_crop(tf.constant(jpeg), tf.constant([1, 2], tf.int64), 256, 224,
                              random_crop=False, mirror=False).numpy()
  np.testing.assert_array_equal(crop, tf.io.decode_jpeg(jpeg).numpy()[16:240, 16:240])


def test_stored_square_is_the_central_square_rescaled():
  # 512x384 JPEGs: the central 384x384 square shrinks to 192 (scale 2). Grey images (JPEG
  # keeps grey levels best) whose level is x, or y, in the resized square; wider than tall, so
  # the square starts at column 64.
  h, w, r = 384, 512, 192
  y, x = np.mgrid[0:h, 0:w]
  want_x, want_y = np.meshgrid(np.arange(r), np.arange(r))
  # Away from the edges (where the antialiasing filter reaches outside the square).
  inner = (slice(4, r - 4), slice(4, r - 4))
  for level, want in (((x - 64) / 2, want_x), (y / 2, want_y)):
    grey = np.repeat(np.clip(level, 0, 255)[..., None], 3, -1).astype(np.uint8)
    stored = image_ops.stored_square(tf.constant(data_encode(grey, 'PNG')),
                                     _squaring(resize_size=r, quality=95))
    assert tf.io.is_jpeg(stored)
    square = tf.io.decode_jpeg(stored).numpy().astype(np.float64)
    assert square.shape == (r, r, 3)
    # The coordinates, to within JPEG's error.
    np.testing.assert_allclose(square.mean(-1)[inner], want[inner], atol=3)
    assert np.abs(square.mean(-1)[inner] - want[inner]).mean() < 1


def test_stored_squares_are_the_exact_rescale_to_within_jpeg_error():
  # The float rescale of the original (as the pipeline computed it on every read before) and
  # the decoded stored square differ only by rounding to uint8 and re-encoding (bench/RESULTS.md
  # measures 2.6 mean absolute error on ImageNet-sized photographs at quality 90).
  rng = np.random.default_rng(3)
  squaring = _squaring(resize_size=96)
  errors = []
  for _ in range(8):
    original = data_encode(data_random_image(rng, *rng.integers(100, 200, size=2)), quality=90)
    exact = image_ops.central_square(tf.constant(original), squaring).numpy()
    stored = tf.io.decode_jpeg(image_ops.stored_square(tf.constant(original), squaring)).numpy()
    errors.append(np.abs(stored - exact))
  errors = np.stack(errors)
  assert errors.mean() < 2.5 and np.percentile(errors, 99) < 12, (errors.mean(),
                                                                   np.percentile(errors, 99))


def test_ten_views_are_the_corners_the_centre_and_their_mirrors():
  image = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
  jpeg = data_encode(image, quality=95, subsampling=0)
  f = tf.io.decode_jpeg(jpeg).numpy()  # what the stored square decodes to
  views = image_ops.eval_views(tf.constant(jpeg), 10, 256, 224).numpy()
  five = [f[:224, :224], f[:224, 32:], f[32:, :224], f[32:, 32:], f[16:240, 16:240]]
  expected = np.stack(five + [v[:, ::-1] for v in five])
  assert views.shape == (10, 224, 224, 3) and views.dtype == np.uint8
  np.testing.assert_array_equal(views, expected)
  centre = image_ops.eval_views(tf.constant(jpeg), 1, 256, 224).numpy()
  np.testing.assert_array_equal(centre, f[None, 16:240, 16:240])


def test_shorter_side_is_resized_and_the_central_square_kept():
  # 100 x 300 image of three vertical bands; the central square is the middle band only.
  image = np.zeros((100, 300, 3), np.uint8)
  image[:, 100:200] = 200
  square = image_ops.central_square(tf.constant(data_encode(image, 'PNG')),
                                    _squaring(resize_size=50))
  np.testing.assert_allclose(square.numpy(), 200, atol=1e-3)
  assert square.shape == (50, 50, 3)
