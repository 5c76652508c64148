"""The paper's figures as pictures and numbers: Figure 3 (conv1 kernels) and Figure 4
(predictions, nearest neighbours in fc7 space), from arrays; `paper_figures` feeds them a
workdir's trained net (`--mode=figures`), and the trainer draws the conv1 grid for TensorBoard.
This module imports nothing of the project but `fileio`, so both can use it.

    python main.py --mode=figures --config=configs/alexnet.py:quickstart --workdir=runs/quickstart

writes into WORKDIR/figures/:

- figure3.png: the conv1 kernels as a grid, one block per column (the paper's two GPUs), each
  kernel contrast-stretched on its own (its lowest weight black, its highest white, over all three
  channels, so colour shows as colour), with each column's colour measure beside its block.
- figure4_left.png: validation images (the first 8 of the split) with their top-5 classes as
  bars; the true class is written under the image and its bar is red when it is in the top 5.
- figure4_right.png: for the first 5 validation images (first column), the 6 training images whose
  fc7 activations are nearest in Euclidean distance, one row per query (`--search_images=N`
  searches the first N training images; 0, the default, the whole training split as the paper did).
- figures.json: the colour measure of every kernel and column, and what each figure shows.

The colour measure (`colour_fraction`) puts a number on what the paper saw by eye, that the
first column's kernels are largely colour-agnostic and the second's colour-specific: for a kernel
w (11x11x3) let g be its grey part, each pixel's mean over R, G, B repeated in all three channels
(the part that responds only to brightness); the measure is ||w - g||^2 / ||w||^2, the fraction
of the kernel's energy outside its grey part. 0 means a pure luminance filter (R = G = B at every
pixel), 2/3 a filter that sees one channel only, 1 a filter with no luminance response at all
(e.g. red minus green). Random kernels (an untrained net) score 2/3 on average, since isotropic
noise puts two of every three dimensions' energy outside the grey line: a column whose measure
falls well below 2/3 has learned colour-agnostic kernels, one near or above 2/3 colour-specific
ones (or nothing yet). A column's measure is the mean over its kernels. It looks at the weights
alone, so the input's mean and scale do not enter it.
"""

from __future__ import annotations

import io
import json
import math
import os

import numpy as np

from alexnet_jax.record import fileio

PER_ROW = 16            # kernels per row of a column's block (the paper's figure: 16 x 3 per GPU)
KERNEL_SCALE = 4        # each kernel pixel drawn as KERNEL_SCALE x KERNEL_SCALE
GAP = 1                 # white pixels between kernels
BLOCK_GAP = 6           # white pixels between the columns' blocks
FIG4_LEFT_IMAGES = 8    # the paper's Figure 4 (left): eight test images
FIG4_QUERIES = 5        # the paper's Figure 4 (right): five queries ...
FIG4_NEIGHBOURS = 6     # ... and six training images each


# ------------------------------------------------------------------------------- Figure 3
def conv1_kernels(params) -> np.ndarray:
  """conv1's kernels on the host as [columns, kernels per column, kh, kw, 3].

  Every process must call this (a kernel split over processes is gathered to all of them).
  """
  import jax  # pylint: disable=import-outside-toplevel
  kernel = params['conv1']['kernel']
  if hasattr(kernel, 'get_value'):  # an nnx.Param rather than its array
    kernel = kernel.get_value()
  if isinstance(kernel, jax.Array) and not kernel.is_fully_addressable:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    kernel = multihost_utils.process_allgather(kernel, tiled=True)
  return np.transpose(np.asarray(kernel, np.float32), (0, 4, 1, 2, 3))


def colour_fraction(kernels: np.ndarray) -> np.ndarray:
  """||w - grey(w)||^2 / ||w||^2 for kernels [..., kh, kw, 3] (module docstring); 0 for w = 0."""
  w = np.asarray(kernels, np.float64)
  grey = w.mean(axis=-1, keepdims=True)
  total = np.sum(w * w, axis=(-3, -2, -1))
  outside = np.sum((w - grey) ** 2, axis=(-3, -2, -1))
  return np.divide(outside, total, out=np.zeros_like(total), where=total > 0)


def column_colour(kernels: np.ndarray) -> np.ndarray:
  """The colour measure of each column [columns] of kernels [columns, n, kh, kw, 3]."""
  return colour_fraction(kernels).mean(axis=-1)


def stretch(kernel: np.ndarray) -> np.ndarray:
  """One kernel [kh, kw, 3] to [0, 1]: its lowest weight 0, its highest 1 (flat: 0.5)."""
  low, high = float(kernel.min()), float(kernel.max())
  if high <= low:
    return np.full(kernel.shape, 0.5)
  return (kernel - low) / (high - low)


def grid_shape(columns: int, per_column: int, kernel_size: int) -> tuple[int, int]:
  """(height, width) in pixels of `conv1_grid`'s image."""
  per_row = min(per_column, PER_ROW)
  rows = math.ceil(per_column / per_row)
  tile = kernel_size * KERNEL_SCALE
  block_h = rows * tile + (rows + 1) * GAP
  return columns * block_h + (columns - 1) * BLOCK_GAP, per_row * tile + (per_row + 1) * GAP


def conv1_grid(kernels: np.ndarray) -> np.ndarray:
  """uint8 RGB image of kernels [columns, n, kh, kw, 3]: a block per column, top to bottom,
  PER_ROW kernels a row, each stretched on its own and drawn KERNEL_SCALE times enlarged, on
  white."""
  columns, n, kh, kw, _ = kernels.shape
  height, width = grid_shape(columns, n, kh)
  image = np.ones((height, width, 3))
  per_row = min(n, PER_ROW)
  tile = kh * KERNEL_SCALE
  block_h = math.ceil(n / per_row) * tile + (math.ceil(n / per_row) + 1) * GAP
  for c in range(columns):
    for i in range(n):
      y = c * (block_h + BLOCK_GAP) + GAP + (i // per_row) * (tile + GAP)
      x = GAP + (i % per_row) * (tile + GAP)
      big = np.kron(stretch(kernels[c, i]), np.ones((KERNEL_SCALE, KERNEL_SCALE, 1)))
      image[y:y + tile, x:x + kw * KERNEL_SCALE] = big
  return np.round(image * 255).astype(np.uint8)


def conv1_grid_image(params) -> np.ndarray:
  """The Figure 3 grid of a parameter tree, for TensorBoard (every process must call it)."""
  return conv1_grid(conv1_kernels(params))


# ------------------------------------------------------------------------------- Figure 4
def distances(queries: np.ndarray, features: np.ndarray) -> np.ndarray:
  """Euclidean distances [Q, N] between queries [Q, F] and features [N, F]."""
  q = np.asarray(queries, np.float64)[:, None, :]
  return np.sqrt(np.sum((q - np.asarray(features, np.float64)[None]) ** 2, axis=-1))


class NearestImages:
  """The k training images nearest to each query (Euclidean, in feature space), kept while the
  training set streams past in batches; of equal distances the earlier image wins."""

  def __init__(self, queries: np.ndarray, k: int):
    self.queries = np.asarray(queries, np.float64)
    self.k = k
    count = len(self.queries)
    self.distances = [np.zeros(0)] * count
    self.images = [None] * count
    self.labels = [np.zeros(0, np.int64)] * count

  def add(self, features: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
    d = distances(self.queries, features)
    for q in range(len(self.queries)):
      pool_d = np.concatenate([self.distances[q], d[q]])
      pool_images = images if self.images[q] is None else np.concatenate([self.images[q], images])
      pool_labels = np.concatenate([self.labels[q], np.asarray(labels, np.int64)])
      keep = np.argsort(pool_d, kind='stable')[:self.k]
      self.distances[q], self.images[q] = pool_d[keep], pool_images[keep]
      self.labels[q] = pool_labels[keep]


def neighbour_grid(queries: np.ndarray, neighbours: np.ndarray, gap: int = 2,
                   query_gap: int = 8) -> np.ndarray:
  """uint8 image: one row per query, the query [Q, S, S, 3] first, then its neighbours
  [Q, K, S, S, 3], on white (`query_gap` pixels after the query, `gap` elsewhere)."""
  q, k, s = neighbours.shape[0], neighbours.shape[1], neighbours.shape[2]
  height = q * s + (q + 1) * gap
  width = (k + 1) * s + (k + 1) * gap + query_gap
  image = np.full((height, width, 3), 255, np.uint8)
  for r in range(q):
    y = gap + r * (s + gap)
    image[y:y + s, gap:gap + s] = queries[r]
    for j in range(k):
      x = gap + s + query_gap + j * (s + gap)
      image[y:y + s, x:x + s] = neighbours[r, j]
  return image


def _new_figure(width: float, height: float):
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  return Figure(figsize=(width, height), dpi=100)


def figure4_left(images: np.ndarray, probs: np.ndarray, labels: np.ndarray,
                 names: list[str], per_row: int = 4):
  """A matplotlib Figure: each image [N, S, S, 3] above its top-5 classes as horizontal bars
  (the paper's Figure 4, left); the true class is written under the image and its bar is red."""
  from alexnet_jax.labels import short_name  # pylint: disable=import-outside-toplevel
  n = len(images)
  rows = math.ceil(n / per_row)
  fig = _new_figure(2.6 * per_row, 3.6 * rows)
  grid = fig.add_gridspec(2 * rows, per_row, height_ratios=[1.6, 1.0] * rows, hspace=0.45,
                          wspace=0.6)
  for i in range(n):
    r, c = divmod(i, per_row)
    ax = fig.add_subplot(grid[2 * r, c])
    ax.imshow(images[i])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(short_name(names[labels[i]]), fontsize=9)
    bars = fig.add_subplot(grid[2 * r + 1, c])
    top = np.argsort(-probs[i], kind='stable')[:5]
    colours = ['tab:red' if t == labels[i] else 'tab:blue' for t in top]
    bars.barh(range(len(top)), probs[i][top], color=colours)
    bars.set_yticks(range(len(top)), [short_name(names[t])[:18] for t in top], fontsize=7)
    bars.invert_yaxis()
    bars.set_xlim(0, 1)
    bars.tick_params(axis='x', labelsize=7)
  return fig


def figure3(kernels: np.ndarray, colour: np.ndarray, zoom: float = 1.5):
  """A matplotlib Figure: the conv1 grid (drawn `zoom` times its pixel size) with each column's
  colour measure beside its block."""
  grid = conv1_grid(kernels)
  height, width = grid.shape[:2]
  w, h = width * zoom / 100, height * zoom / 100  # inches at dpi 100
  margin, text = 0.1, 1.5
  fig = _new_figure(w + 2 * margin + text, h + 2 * margin)
  ax = fig.add_axes([margin / (w + 2 * margin + text), margin / (h + 2 * margin),
                     w / (w + 2 * margin + text), h / (h + 2 * margin)])
  ax.imshow(grid, interpolation='nearest')
  ax.set_xticks([])
  ax.set_yticks([])
  block_h = (height - (len(colour) - 1) * BLOCK_GAP) / len(colour)
  for c, value in enumerate(colour):
    y = c * (block_h + BLOCK_GAP) + block_h / 2
    ax.text(width + 12 / zoom, y, f'column {c + 1}\ncolour {value:.2f}', va='center',
            fontsize=9)
  return fig


# ------------------------------------------------------------------------------- files
def save_png(path: str, image: np.ndarray) -> None:
  from PIL import Image  # pylint: disable=import-outside-toplevel  (a matplotlib dependency)
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format='PNG')
  fileio.write_atomic(path, buffer.getvalue())


def save_figure(path: str, fig) -> None:
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png')
  fileio.write_atomic(path, buffer.getvalue())
