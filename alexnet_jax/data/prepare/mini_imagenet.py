"""The built-in miniature ImageNet: made offline, prepared by the real `imagenet2012` builder.

`make` writes real JPEGs for the first `data.mini.num_classes` synsets of TFDS's ImageNet labels
file (so labels are 0..N-1), packs them as ILSVRC2012_img_train.tar (a tar of per-synset tars)
and prepares them with TFDS's `imagenet2012` builder; `prepare.py` then stores their squares and
computes their mean image and RGB PCA, so training reads them through exactly the ImageNet code
path:

    python -m alexnet_jax.data.prepare --config=configs/alexnet.py:quickstart

(training does this by itself when the data is missing). Validation is a held-out slice of train
(see docs/data.md for why). It only replaces its own earlier output: a data.data_dir holding
anything else (e.g. a real ILSVRC-2012) is refused.

Each class has its own shape, colour and texture; size, aspect ratio, position, colour, background
and noise vary per image, so a small AlexNet has something to learn but not a constant to memorize.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import time

import numpy as np
from absl import logging as absl_logging

from alexnet_jax.data import locations
from alexnet_jax.data import squares
from alexnet_jax.data.errors import DatasetError
from alexnet_jax.data.prepare import data_lock
from alexnet_jax.data.prepare import ilsvrc_archive
from alexnet_jax.record import fileio

# What the generator draws: (shape, hue in degrees, texture) per class, in label order.
_CLASS_LOOKS = (
    ('disc', 0, 'smooth'),
    ('square', 120, 'hstripes'),
    ('triangle', 230, 'smooth'),
    ('ring', 55, 'smooth'),
    ('cross', 300, 'smooth'),
    ('diamond', 180, 'checker'),
    ('ellipse', 30, 'vstripes'),
    ('square', 270, 'dots'),
    ('disc', 90, 'checker'),
    ('target', 340, 'smooth'),
)
_MAX_CLASSES = len(_CLASS_LOOKS)
_PARAMS_FILE = 'mini_imagenet.json'


def synsets(num_classes: int) -> list[str]:
  """The first `num_classes` synsets of TFDS's imagenet2012 labels file (labels 0..N-1)."""
  import tensorflow_datasets as tfds

  if not 1 <= num_classes <= _MAX_CLASSES:
    raise ValueError(f'data.mini.num_classes must be in 1..{_MAX_CLASSES}, got {num_classes}.')
  labels_file = tfds.core.tfds_path('datasets/imagenet2012/labels.txt')
  with open(labels_file) as f:
    names = [line.strip() for line in f if line.strip()]
  return names[:num_classes]


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
  """One colour, h in degrees, s and v in [0, 1]; returns RGB in [0, 255]."""
  c = v * s
  x = c * (1 - abs((h / 60) % 2 - 1))
  r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h // 60) % 6]
  return 255 * (np.array([r, g, b]) + (v - c))


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Inside-mask of a unit-size shape in object coordinates (u right, v down)."""
  r = np.hypot(u, v)
  if shape == 'disc':
    return r < 1
  if shape == 'ellipse':
    return np.hypot(u, 2 * v) < 1
  if shape == 'ring':
    return (r < 1) & (r > 0.55)
  if shape == 'target':
    return (r < 1) & (np.floor(r * 4) % 2 == 0)
  if shape == 'square':
    return (np.abs(u) < 0.85) & (np.abs(v) < 0.85)
  if shape == 'diamond':
    return np.abs(u) + np.abs(v) < 1
  if shape == 'cross':
    return ((np.abs(u) < 0.3) & (np.abs(v) < 1)) | ((np.abs(v) < 0.3) & (np.abs(u) < 1))
  if shape == 'triangle':
    return (v < 0.8) & (v > -1 + 2 * np.abs(u) * 0.9)
  raise ValueError(shape)


def _texture(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
  """A [0, 1] modulation of the object's colour."""
  if texture == 'smooth':
    return np.ones_like(u)
  if texture == 'hstripes':
    return (np.floor(v / period) % 2).astype(np.float64)
  if texture == 'vstripes':
    return (np.floor(u / period) % 2).astype(np.float64)
  if texture == 'checker':
    return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float64)
  if texture == 'dots':
    fu = (u / period) % 1 - 0.5
    fv = (v / period) % 1 - 0.5
    return (np.hypot(fu, fv) < 0.3).astype(np.float64)
  raise ValueError(texture)


def draw(label: int, rng: np.random.Generator, min_side: int, max_side: int) -> np.ndarray:
  """One uint8 RGB image of class `label`: its shape/colour/texture, everything else random."""
  shape, hue, texture = _CLASS_LOOKS[label]
  h, w = (int(x) for x in rng.integers(min_side, max_side + 1, size=2))
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
  # Background: a random colour gradient, far from saturated so shapes stand out by more than hue.
  c0 = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0, 0.35), rng.uniform(0.2, 0.9))
  c1 = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0, 0.35), rng.uniform(0.2, 0.9))
  angle = rng.uniform(0, 2 * np.pi)
  t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h + 1) / 2
  img = c0 * (1 - t[..., None]) + c1 * t[..., None]
  # Object: random size, aspect ratio, position and small rotation.
  size = rng.uniform(0.25, 0.45) * min(h, w)
  aspect = np.exp(rng.uniform(-0.3, 0.3))
  cy, cx = rng.uniform(size, h - size) if h > 2 * size else h / 2, (
      rng.uniform(size, w - size) if w > 2 * size else w / 2)
  rot = rng.uniform(-0.35, 0.35)
  dx, dy = (xx - cx) / size, (yy - cy) / size
  u = (np.cos(rot) * dx + np.sin(rot) * dy) / aspect
  v = (-np.sin(rot) * dx + np.cos(rot) * dy) * aspect
  mask = _shape_mask(shape, u, v)
  colour = _hsv_to_rgb((hue + rng.uniform(-20, 20)) % 360, rng.uniform(0.6, 1.0),
                       rng.uniform(0.6, 1.0))
  tex = _texture(texture, u, v, period=rng.uniform(0.2, 0.35))
  fg = colour * (0.45 + 0.55 * tex[..., None])
  img = np.where(mask[..., None], fg, img)
  img = img + rng.normal(0, rng.uniform(3, 15), size=img.shape)
  return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, quality: int) -> bytes:
  import tensorflow as tf
  return tf.io.encode_jpeg(image, quality=quality).numpy()


def _params(data_config) -> dict:
  mini = data_config.mini
  return dict(num_classes=int(mini.num_classes), images_per_class=int(mini.images_per_class),
              min_side=int(mini.min_side), max_side=int(mini.max_side),
              jpeg_quality=int(mini.jpeg_quality), seed=int(mini.seed), version=1)


def _read_marker(root: str) -> dict | None:
  """The data dir's `mini_imagenet.json`, or None if there is none (or it is unreadable).

  It holds the `data.mini` settings, 'complete' (False while making; absent in markers written
  before it existed, which were only written when complete) and 'made': every path this module
  writes besides the marker itself (absent in older markers).
  """
  try:
    with open(os.path.join(root, _PARAMS_FILE)) as f:
      marker = json.load(f)
  except (OSError, ValueError):
    return None
  return marker if isinstance(marker, dict) else None


def _write_marker(root: str, marker: dict) -> None:
  os.makedirs(root, exist_ok=True)
  fileio.write_json_atomic(os.path.join(root, _PARAMS_FILE), marker)  # never a half-written one


def is_made(data_config) -> bool:
  """Whether the originals on disk were made, completely, with the config's `data.mini`."""
  marker = _read_marker(locations.data_dir(data_config))
  return (marker is not None and marker.get('complete', True) and
          all(marker.get(k) == v for k, v in _params(data_config).items()))


def _outputs(data_config) -> list[str]:
  """Every path made from the mini ImageNet's images (the prepared dataset folder, the two
  tars, the stored squares, the stats file): replaced when they are made again."""
  root = locations.data_dir(data_config)
  manual_dir = locations.manual_dir(data_config)
  # The names of the squares and the stats file have the TFDS version in them.
  source_name = locations.source_name(data_config)
  return [os.path.join(root, 'imagenet2012'),
          os.path.join(manual_dir, ilsvrc_archive.TRAIN_TAR),
          os.path.join(manual_dir, ilsvrc_archive.VAL_TAR),
          squares.folder(data_config, source_name),
          locations.stats_path(data_config, source_name)]


def _inside(path: str, folder: str) -> bool:
  return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == \
      os.path.abspath(folder)


def check_nothing_foreign(data_config) -> list[str]:
  """Raises DatasetError unless every path `make` would replace was made by `make` itself;
  returns those paths. Nothing is ever deleted that this module did not write, and nothing is
  written here."""
  root = locations.data_dir(data_config)
  marker = _read_marker(root)
  fix = ('Set data.data_dir to a new or empty folder for the mini ImageNet (the quickstart uses '
         '~/.cache/alexnet_jax/mini_imagenet), and leave data.manual_dir and data.stats_dir '
         'empty unless they point at folders of their own.')
  if marker is None:
    try:
      entries = sorted(set(os.listdir(root)) - {data_lock.LOCK_FILE})
    except FileNotFoundError:
      entries = []
    except NotADirectoryError:
      entries = [root]
    if entries:
      raise DatasetError(
          f'data.data_dir = {root} already holds data that the mini ImageNet did not make '
          f'({", ".join(entries[:5])}{", ..." if len(entries) > 5 else ""}; no '
          f'{_PARAMS_FILE} there). Making the mini ImageNet would replace its imagenet2012 '
          f'dataset and tars (e.g. a real ILSVRC-2012), so nothing was changed. {fix}')
  outputs = _outputs(data_config)
  if marker is not None and 'made' in marker:
    owned = {os.path.abspath(p) for p in marker['made']}
    ours = lambda path: os.path.abspath(path) in owned  # noqa: E731
  else:  # an older marker: it owned its data dir
    ours = lambda path: _inside(path, root)  # noqa: E731
  foreign = [p for p in outputs if os.path.lexists(p) and not ours(p)]
  if foreign:
    raise DatasetError(
        'Making the mini ImageNet would replace ' + ', '.join(foreign) + ', which it did not '
        f'make (it may be real data), so nothing was changed. {fix}')
  return outputs


def make(data_config, *, log=print) -> None:
  """Writes the JPEGs and the train tar and prepares them with TFDS (the squares and the stats
  are made from them by prepare.py, which calls this).

  Refuses (DatasetError) if data.data_dir holds anything without the mini ImageNet's marker, or
  if a path it writes exists and was not made by it: it replaces only its own earlier output.
  """
  import tensorflow_datasets as tfds

  start = time.time()
  p = _params(data_config)
  root = locations.data_dir(data_config)
  manual_dir = locations.manual_dir(data_config)
  outputs = check_nothing_foreign(data_config)
  # Claim the outputs before writing any of them, so an interrupted make can be made again.
  _write_marker(root, {**p, 'complete': False, 'made': outputs})
  # Our own output made with other settings is stale: remove it so TFDS prepares afresh.
  for path in outputs:
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.remove(path)

  rng = np.random.default_rng(p['seed'])
  images = {}
  for label, synset in enumerate(synsets(p['num_classes'])):
    images[synset] = [
        (f'{synset}_{i}.JPEG',
         _jpeg(draw(label, rng, p['min_side'], p['max_side']), p['jpeg_quality']))
        for i in range(p['images_per_class'])]
  ilsvrc_archive.write_train_tar(os.path.join(manual_dir, ilsvrc_archive.TRAIN_TAR), images)
  # The builder needs a non-empty val tar, and labels its files by sorted position against
  # ImageNet's 50,000 validation labels, so a few-class val tar cannot be made: it holds one
  # placeholder image (labelled like the real first val image, outside the N classes), which the
  # config never reads; validation is a held-out slice of train (data.eval_split).
  placeholder = _jpeg(np.full((32, 32, 3), 128, np.uint8), p['jpeg_quality'])
  ilsvrc_archive.write_val_tar(os.path.join(manual_dir, ilsvrc_archive.VAL_TAR), [placeholder])
  log(f'mini_imagenet: wrote {p["num_classes"] * p["images_per_class"]} JPEGs to '
      f'{manual_dir} in {time.time() - start:.1f}s')

  builder = tfds.builder('imagenet2012', data_dir=root)
  tfds.disable_progress_bar()  # seconds of work; its bars would garble the run's output
  # TFDS's own lines (where it writes; that the mini ImageNet has no test tar) are kept for a
  # failure: they say nothing a quickstart needs.
  said = io.StringIO()
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    with contextlib.redirect_stdout(said):
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except Exception:
    sys.stdout.write(said.getvalue())
    raise
  finally:
    absl_logging.set_verbosity(verbosity)
  _write_marker(root, {**p, 'complete': True, 'made': outputs})
  log(f'mini_imagenet: prepared with the imagenet2012 builder in {root} '
      f'({time.time() - start:.1f}s)')
