"""The paper's figures: the colour measure on hand-made kernels, the conv1 grid and the
nearest-neighbour grid pixel by pixel, the streaming neighbour search against brute force, and
the matplotlib figures' size and layout."""

import io

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from alexnet_jax import figures


def _kernel(rgb_per_pixel):
  """An 11x11x3 kernel with the same RGB triple at every pixel."""
  return np.tile(np.asarray(rgb_per_pixel, np.float64), (11, 11, 1))


def test_colour_measure_on_hand_made_kernels():
  grey = _kernel([0.3, 0.3, 0.3])                 # R = G = B: a luminance filter
  red = _kernel([1.0, 0.0, 0.0])                  # sees one channel only
  opponent = _kernel([1.0, -1.0, 0.0])            # red minus green: no luminance response
  mixed = np.zeros((11, 11, 3))
  mixed[0, 0] = [1.0, 0.0, 0.0]                   # energy 1, of which (2/3)^2 + 2 (1/3)^2 = 2/3
  mixed[5, 5] = [1.0, 1.0, 1.0]                   # energy 3, all grey
  checker = np.where((np.indices((11, 11)).sum(0) % 2)[..., None] == 0, 1.0, -1.0) * np.ones(3)
  got = figures.colour_fraction(np.stack([grey, red, opponent, mixed, checker, 0 * grey]))
  np.testing.assert_allclose(got, [0.0, 2 / 3, 1.0, (2 / 3) / 4, 0.0, 0.0], atol=1e-12)
  # Per column: the mean over its kernels, e.g. the paper's picture (grey column, colour column).
  kernels = np.stack([np.stack([grey, -grey, 2 * grey]), np.stack([red, opponent, mixed])])
  np.testing.assert_allclose(figures.column_colour(kernels), [0.0, (2 / 3 + 1 + 1 / 6) / 3])


def test_colour_measure_of_random_kernels_is_two_thirds():
  # Isotropic noise puts 2 of every 3 dimensions' energy outside the grey (R = G = B) line: an
  # untrained conv1 scores about 2/3, a colour-agnostic one well below.
  kernels = np.random.default_rng(4).normal(size=(2000, 11, 11, 3))
  assert figures.colour_fraction(kernels).mean() == pytest.approx(2 / 3, abs=0.002)


def test_conv1_kernels_from_parameters():
  kernel = np.arange(2 * 11 * 11 * 3 * 4, dtype=np.float32).reshape(2, 11, 11, 3, 4)
  params = {'conv1': {'kernel': nnx.Param(kernel)}}
  got = figures.conv1_kernels(params)
  assert got.shape == (2, 4, 11, 11, 3)
  np.testing.assert_array_equal(got[1, 3], kernel[1, :, :, :, 3])


def test_conv1_grid_layout():
  rng = np.random.default_rng(0)
  columns, n, size = 2, 18, 3          # 18 kernels a column: one full row of 16 and a second row
  kernels = rng.normal(size=(columns, n, size, size, 3))
  kernels[1, 17] = 0.25                # a flat kernel is drawn mid-grey
  grid = figures.conv1_grid(kernels)
  s, gap, block_gap, tile = figures.KERNEL_SCALE, figures.GAP, figures.BLOCK_GAP, size * 4
  assert s == 4 and gap == 1 and figures.PER_ROW == 16
  block_h = 2 * tile + 3 * gap
  assert grid.shape == (2 * block_h + block_gap, 16 * tile + 17 * gap, 3)
  assert grid.dtype == np.uint8

  def tile_at(c, i):
    y = c * (block_h + block_gap) + gap + (i // 16) * (tile + gap)
    x = gap + (i % 16) * (tile + gap)
    return grid[y:y + tile, x:x + tile]

  for c, i in [(0, 0), (0, 15), (0, 16), (1, 5), (1, 16)]:
    k = kernels[c, i]
    stretched = (k - k.min()) / (k.max() - k.min())  # each kernel on its own scale
    expected = np.round(np.repeat(np.repeat(stretched, 4, 0), 4, 1) * 255)
    np.testing.assert_array_equal(tile_at(c, i), expected)
    assert tile_at(c, i).min() == 0 and tile_at(c, i).max() == 255
  assert (tile_at(1, 17) == 128).all()
  # White between kernels, between the blocks, and where the second row has no kernel.
  assert (grid[0] == 255).all() and (grid[:, 0] == 255).all()
  assert (grid[block_h:block_h + block_gap] == 255).all()
  assert (grid[gap + tile + gap:, 2 * (tile + gap) + gap:][:tile] == 255).all()


def test_neighbour_grid_layout():
  q, k, s = 3, 4, 5
  queries = np.stack([np.full((s, s, 3), 10 * (r + 1), np.uint8) for r in range(q)])
  neighbours = np.stack([[np.full((s, s, 3), 100 + 10 * r + j, np.uint8) for j in range(k)]
                         for r in range(q)])
  grid = figures.neighbour_grid(queries, neighbours, gap=2, query_gap=8)
  assert grid.shape == (q * s + (q + 1) * 2, (k + 1) * s + (k + 1) * 2 + 8, 3)
  for r in range(q):
    y = 2 + r * (s + 2)
    assert (grid[y:y + s, 2:2 + s] == 10 * (r + 1)).all()
    for j in range(k):
      x = 2 + s + 8 + j * (s + 2)
      assert (grid[y:y + s, x:x + s] == 100 + 10 * r + j).all()
  assert (grid[:, 2 + s:2 + s + 8] == 255).all()


def test_streaming_neighbour_search_equals_brute_force():
  rng = np.random.default_rng(1)
  queries = rng.normal(size=(3, 7))
  features = rng.normal(size=(50, 7))
  features[31] = features[12]  # a tie: the earlier image wins
  queries[0] = features[12] + 1e-9
  images = np.arange(50, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
  labels = np.arange(50) % 10
  search = figures.NearestImages(queries, k=6)
  for start in (0, 20, 37):
    stop = {0: 20, 20: 37, 37: 50}[start]
    search.add(features[start:stop], images[start:stop], labels[start:stop])
  brute = np.sqrt(((queries[:, None] - features[None]) ** 2).sum(-1))
  for q in range(3):
    order = np.argsort(brute[q], kind='stable')[:6]
    np.testing.assert_array_equal(search.images[q][:, 0, 0, 0], order)
    np.testing.assert_array_equal(search.labels[q], labels[order])
    np.testing.assert_allclose(search.distances[q], brute[q][order])
  assert search.images[0][0, 0, 0, 0] == 12 and search.images[0][1, 0, 0, 0] == 31


def _png_size(fig):
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png')
  with Image.open(io.BytesIO(buffer.getvalue())) as image:
    return image.size


def test_figure4_left_layout_and_marked_true_class():
  n, classes = 6, 10
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)
  probs = rng.dirichlet(np.ones(classes), size=n)
  labels = np.array([int(np.argsort(-p)[2]) for p in probs])  # the true class ranks third ...
  labels[5] = int(np.argsort(-probs[5])[-1])                   # ... except last: not in the top 5
  names = [f'class{i}, synonym' for i in range(classes)]
  fig = figures.figure4_left(images, probs, labels, names)
  assert _png_size(fig) == (4 * 260, 2 * 360)                   # 4 per row, 2 rows
  axes = fig.axes
  assert len(axes) == 2 * n
  for i in range(n):
    picture, bars = axes[2 * i], axes[2 * i + 1]
    np.testing.assert_array_equal(picture.images[0].get_array(), images[i])
    assert picture.get_xlabel() == f'class{labels[i]}'
    top5 = np.argsort(-probs[i])[:5]
    widths = [patch.get_width() for patch in bars.patches]
    np.testing.assert_allclose(widths, probs[i][top5])
    assert [t.get_text() for t in bars.get_yticklabels()] == [f'class{t}' for t in top5]
    reds = [j for j, patch in enumerate(bars.patches)
            if patch.get_facecolor()[:3] == pytest.approx((0.839, 0.153, 0.157), abs=1e-3)]
    assert reds == ([2] if i < 5 else [])


def test_figure3_shows_the_grid_and_the_measure():
  kernels = np.random.default_rng(3).normal(size=(2, 48, 11, 11, 3))
  fig = figures.figure3(kernels, np.array([0.12, 0.56]))
  axes = fig.axes[0]
  np.testing.assert_array_equal(axes.images[0].get_array(), figures.conv1_grid(kernels))
  assert [t.get_text() for t in axes.texts] == ['column 1\ncolour 0.12', 'column 2\ncolour 0.56']
  width, height = _png_size(fig)
  assert width > 400 and height > 200
