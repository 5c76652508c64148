"""Images/s and images per CPU-second of the training input, on ImageNet-sized natural JPEGs.

    python bench/input_pipeline.py [--images=300] [--seconds=6] [--rounds=3] [--chroma=444]
    python bench/input_pipeline.py --study=sizes     # how the originals were calibrated
    python bench/input_pipeline.py --study=quality   # how the stored squares' JPEG was chosen

Needs the `bench` extra (scikit-image, for its bundled photographs): pip install -e '.[bench]'.

The originals: scikit-image's bundled photographs (astronaut, coffee, chelsea, rocket, retina,
hubble_deep_field, immunohistochemistry; nothing is downloaded), each resized to cover a random
ILSVRC-2012-like size (`_size`: shorter side 333-375 for three in four, else 150-332; longer side
at most 500; mean 403x355 px over 300, ILSVRC-2012's train mean is about 400x350) and up to 1.5x
more, cropped at a random place, with random per-channel gain and offset, a random mirror and
Gaussian noise (the photographs are smoother than ImageNet's), saved as JPEG. The mini ImageNet's
150-pixel images would hide the cost of decoding.

Calibration (`--study=sizes`, 300 images; the squares made as the project makes them,
`image_ops.stored_square` with the default data config: 256, quality 90, 4:2:0). Targets: the
originals ~110 KB (ILSVRC-2012's train mean) at ~400x350, their stored squares ~17-20 KB.

    look                               originals   squares
    4:2:0, quality 98, noise std 5-8    109.7 KB   18.1 KB   LOOKS['420'], the default
      quality 97 / 99                    96 / 132   18.1
      noise std 3-6 / 7-10              101 / 117   17.4 / 19.0
      noise blurred by 1 px (coarser)      97.6     19.4
      noise minus its 1 px blur (finer)   107.7     17.5
    4:2:0, quality 97, noise std 8-11      107.0    19.4
    4:2:0, quality 95, noise std 8-11      85.1     19.4
    4:4:4, quality 96, noise std 2-4      108.1     17.1      LOOKS['444'], the labelled row
    4:4:4, quality 90, noise std 8-11      98.3     19.7      the old reference

The two targets pull against each other: noise inflates both (the squares, downscaled ~1.3x with
antialiasing, keep part of it), and the photographs' own detail with noise light enough for the
squares gives 4:2:0 originals of only 55-95 KB at quality 90-96. The originals' quality moves
them alone (the squares are re-encoded from the decoded original at quality 90), so it is the
lever: 4:2:0 needs quality 98. Grain coarser than a pixel fattens the squares, finer grain helps
little. The default originals are 4:2:0 (a 4:4:4 JPEG of the same pixels at quality 98 has 1.9x
the bytes and decodes ~1.6x slower). A survey of the ILSVRC-2012 files (M. Ehrlich,
"Compression in the ImageNet Dataset", 2021) reports most of them as 4:4:4 at quality 96, which
reaches the same sizes with light noise: the speed run decodes those too, as a labelled row, and
`--chroma=444` makes them the originals of every row.

Contenders, on the same images held in memory, alternating in rounds in one run (the machine is
shared: only ratios within a run count), each a tf.data pipeline with the same parallelism:

  bare decode          tf.io.decode_jpeg of the full original (the reference, ratio 1.00)
  bare decode, 4:4:4   the same of 4:4:4 originals (LOOKS['444']; only with 4:2:0 originals)
  before               the pipeline before the stored squares, per image as it was: the crop's
                       window of the original decoded (decode_and_crop_jpeg), resized with
                       antialiasing to 224 of 256, mirrored, PCA colour noise, mean subtracted,
                       float32 out, batched
  JPEG squares         alexnet_jax.data.pipeline.train_iterator on the stored 256x256 JPEG
                       squares of the same originals: the 224 window decoded, mirrored, uint8
                       out, batched; the float work runs on the device
  raw squares          the same with data.squares_format='raw' (where the config has it): the
                       whole uint8 squares gathered into the batch with the crops' draws; the
                       crop and the float work run on the device. The squares (192 KiB each)
                       all sit in memory here; ILSVRC-2012's would be ~250 GB

Each iterator is the whole of its path's host share: what the device does is not in it, so no
path needs a separate "host only" row. Images per CPU-second are images per second of this
process's user + system CPU time, every thread (tf.data's included): what one core does at full
use. core-ms/batch is its inverse for one training batch (--batch): the host's share of a
training step on one core. The load average before and after is printed beside.
"""

import dataclasses
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_IMAGES = flags.DEFINE_integer('images', 300, 'Number of benchmark JPEGs.')
_SECONDS = flags.DEFINE_float('seconds', 6.0, 'Measuring time of each contender per round.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Rounds; contenders alternate within each.')
_BATCH = flags.DEFINE_integer('batch', 128, 'Batch size of the training pipelines.')
_STUDY = flags.DEFINE_enum('study', 'speed', ['speed', 'sizes', 'quality'], 'What to measure.')
_CHROMA = flags.DEFINE_enum('chroma', '420', ['420', '444'], 'Chroma of the originals: the '
                            'calibrated look of each (LOOKS).')
_QUALITY = flags.DEFINE_integer('original_quality', None, 'JPEG quality of the originals '
                                '(default: the look\'s).')
_NOISE = flags.DEFINE_list('noise', None, 'Range of the std of the noise added to the '
                           'photographs, 0-255 units (default: the look\'s).')
_NOISE_BLUR = flags.DEFINE_float('noise_blur', None, 'Gaussian sigma (px) of the noise: > 0 '
                                 'blurs it, < 0 keeps what the blur removes (default: the '
                                 'look\'s).')

PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'retina', 'hubble_deep_field',
          'immunohistochemistry')


@dataclasses.dataclass(frozen=True)
class Look:
  """How the originals are made (see the module docstring for how LOOKS were calibrated)."""
  quality: int                             # JPEG quality of the originals (PIL)
  noise: tuple[float, float]               # range of the noise's std (0-255 units)
  noise_blur: float = 0.0                  # > 0: the noise blurred by this sigma (px, coarser
                                           # grain); < 0: minus its blur (finer grain)
  zoom: tuple[float, float] = (1.0, 1.5)   # upscale beyond the least that covers the size
  chroma: str = '420'                      # '420' (PIL subsampling=2) or '444' (=0)


# Calibrated so that the originals average ~110 KB at ~400x350 and their stored squares ~17-20 KB.
LOOKS = {'420': Look(quality=98, noise=(5.0, 8.0)),
         '444': Look(quality=96, noise=(2.0, 4.0), chroma='444')}


def _size(rng) -> tuple[int, int]:
  """(height, width) like ILSVRC-2012's: the shorter side 333-375 for three in four (500x375 and
  500x333 are the commonest), else 150-332; 4:3 or 3:2 for two in five, else an aspect of
  1.0-1.5; the longer side at most 500; three in four landscape. Mean ~400x350."""
  short = int(rng.integers(333, 376)) if rng.random() < 0.75 else int(rng.integers(150, 333))
  aspect = float(rng.choice([4 / 3, 3 / 2])) if rng.random() < 0.4 else float(rng.uniform(1, 1.5))
  long = min(round(short * aspect), 500)
  return (short, long) if rng.random() < 0.75 else (long, short)


def _view(photo, h: int, w: int, rng, look: Look):
  """float64 [h, w, 3]: the photograph resized (bicubic) to cover h x w, times `look.zoom` (so
  its detail varies in scale), cropped at a random place."""
  import numpy as np
  from PIL import Image

  scale = max(h / photo.shape[0], w / photo.shape[1]) * float(rng.uniform(*look.zoom))
  big = Image.fromarray(photo).resize(
      (max(w, round(photo.shape[1] * scale)), max(h, round(photo.shape[0] * scale))),
      Image.BICUBIC)
  y = int(rng.integers(0, big.height - h + 1))
  x = int(rng.integers(0, big.width - w + 1))
  return np.asarray(big.crop((x, y, x + w, y + h)), np.float64)


def _vary(image, rng, look: Look):
  """uint8: random per-channel gain and offset, Gaussian noise (the photographs are smoother than
  ImageNet's; its grain set by `look.noise_blur`, its std kept), a random mirror."""
  import numpy as np
  import scipy.ndimage

  image = image * rng.uniform(0.8, 1.2, 3) + rng.uniform(-20, 20, 3)
  noise = rng.normal(0, 1, image.shape)
  if look.noise_blur:
    blurred = scipy.ndimage.gaussian_filter(noise, (abs(look.noise_blur),) * 2 + (0,))
    noise = blurred if look.noise_blur > 0 else noise - blurred
    noise /= noise.std()
  image = image + noise * float(rng.uniform(*look.noise))
  if rng.random() < 0.5:
    image = image[:, ::-1]
  return np.clip(image, 0, 255).astype(np.uint8)


def natural_images(n: int, seed: int = 0, look: Look = LOOKS['420']):
  """`n` ImageNet-sized uint8 images of natural content (see the module docstring)."""
  import numpy as np
  import skimage.data

  rng = np.random.default_rng(seed)
  photos = [getattr(skimage.data, name)()[..., :3] for name in PHOTOS]
  for i in range(n):
    yield _vary(_view(photos[i % len(photos)], *_size(rng), rng, look), rng, look)


def encode(image, look: Look) -> bytes:
  """The image as an original: JPEG of `look.quality` with `look.chroma` (PIL)."""
  import io

  from PIL import Image

  buf = io.BytesIO()
  Image.fromarray(image).save(buf, 'JPEG', quality=look.quality,
                              subsampling={'420': 2, '444': 0}[look.chroma])
  return buf.getvalue()


def natural_jpegs(n: int, seed: int = 0, look: Look = LOOKS['420']) -> list[bytes]:
  """`n` ImageNet-sized JPEGs of natural content (see the module docstring)."""
  return [encode(image, look) for image in natural_images(n, seed, look)]


def _squares_kb(encoded) -> float:
  """Mean KB of the originals' stored 256 squares, made as the project makes them (the default
  data config: quality 90, TensorFlow's default chroma, 4:2:0)."""
  import numpy as np
  import tensorflow as tf

  from alexnet_jax.data import image_ops, squares
  from configs import alexnet

  squaring = squares.squaring(alexnet.get_config().data)
  square = tf.function(lambda b: image_ops.stored_square(b, squaring))
  return float(np.mean([len(square(tf.constant(e)).numpy()) for e in encoded])) / 1e3


def _describe(encoded) -> str:
  """Mean KB and mean width x height of JPEGs."""
  import io

  import numpy as np
  from PIL import Image

  sizes = np.array([Image.open(io.BytesIO(e)).size for e in encoded])
  return (f'mean {np.mean([len(e) for e in encoded]) / 1e3:5.1f} KB, mean '
          f'{sizes[:, 0].mean():.0f}x{sizes[:, 1].mean():.0f} px')


def _load() -> str:
  return ' '.join(f'{x:.2f}' for x in os.getloadavg())


def _cpu_seconds() -> float:
  t = os.times()
  return t.user + t.system


def _measure(iterator, images_per_item: int, seconds: float) -> tuple[float, float]:
  """(images/s, images per CPU-second) over `seconds`, after a warm-up."""
  for _ in range(3):
    next(iterator)
  count, start, cpu = 0, time.perf_counter(), _cpu_seconds()
  while time.perf_counter() - start < seconds:
    next(iterator)
    count += images_per_item
  wall, used = time.perf_counter() - start, _cpu_seconds() - cpu
  return count / wall, count / max(used, 1e-9)


def _before_crop(image_bytes, seed, r: int = 256, s: int = 224):
  """The training crop as the pipeline made it before the stored squares (float32 [s, s, 3]):
  the window of the original that the crop at a random offset of the rescaled central square
  covers, decoded alone and resized with antialiasing, then mirrored half the time. `seed`
  ([2] int64) splits as it did then: offsets, mirror, and (returned) the noise's seed."""
  import tensorflow as tf

  seeds = tf.random.experimental.stateless_split(seed, 4)
  offset_y = tf.random.stateless_uniform([], seeds[0], 0, r - s + 1, dtype=tf.int32)
  offset_x = tf.random.stateless_uniform([], seeds[1], 0, r - s + 1, dtype=tf.int32)
  shape = tf.io.extract_jpeg_shape(image_bytes)
  h, w = shape[0], shape[1]
  m = tf.minimum(h, w)
  scale = tf.cast(m, tf.float32) / r

  def span(offset, start):
    lo = tf.cast(tf.floor(tf.cast(offset, tf.float32) * scale), tf.int32)
    hi = tf.cast(tf.math.ceil(tf.cast(offset + s, tf.float32) * scale), tf.int32)
    lo = tf.clip_by_value(lo, 0, m - 1)
    hi = tf.clip_by_value(hi, lo + 1, m)
    return start + lo, hi - lo

  y, hh = span(offset_y, (h - m) // 2)
  x, ww = span(offset_x, (w - m) // 2)
  window = tf.image.decode_and_crop_jpeg(image_bytes, tf.stack([y, x, hh, ww]), channels=3)
  image = tf.ensure_shape(tf.image.resize(window, [s, s], antialias=True), [s, s, 3])
  flip = tf.random.stateless_uniform([], seeds[2]) < 0.5
  return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image), seeds[3]


def _before_pipeline(encoded, batch: int):
  """The training pipeline's per-image work before the stored squares (as it was), on the
  originals: `_before_crop`, then PCA colour noise and the mean, float32 out, batched."""
  import numpy as np
  import tensorflow as tf

  from alexnet_jax.data import device_preprocess

  vectors = tf.constant(device_preprocess.CODE_PCA_VECTORS, tf.float32)
  scales = tf.constant(device_preprocess.CODE_PCA_STD, tf.float32)
  mean = tf.constant([127.30, 119.72, 104.91], tf.float32)

  def train_image(image_bytes, seed):
    image, noise_seed = _before_crop(image_bytes, seed)
    alpha = tf.random.stateless_normal([3], noise_seed) * 0.1
    return image + tf.linalg.matvec(vectors, alpha * scales) - mean

  values = tf.constant(np.array(encoded, dtype=object))
  ds = (tf.data.Dataset.range(2**62)
        .map(lambda i: train_image(values[i % len(encoded)], tf.stack([tf.constant(0, tf.int64),
                                                                        i])),
             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch, drop_remainder=True).prefetch(4))
  return ds.as_numpy_iterator()


def _folder_of(encoded, root: str) -> str:
  """The JPEGs as an image folder (one class per photograph), for the project's own commands."""
  for i, data in enumerate(encoded):
    folder = os.path.join(root, 'images', 'train', f'c{i % len(PHOTOS)}')
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f'{i:05d}.jpg'), 'wb') as f:
      f.write(data)
  return os.path.join(root, 'images')


def _data_config(encoded, root: str):
  """The default data config, pointed at the JPEGs as an image folder under `root`."""
  from configs import alexnet

  config = alexnet.get_config().data
  config.dataset, config.folder = 'image_folder', _folder_of(encoded, root)
  config.data_dir, config.train_split, config.eval_split = root, 'train', 'train'
  config.mean, config.cache, config.shuffle_buffer = 'channel', 'memory', 1024
  return config


def _squares(config, name: str):
  """The dataset of `config`, its squares made by the project's own `prepare`."""
  from alexnet_jax.data.prepare import prepare

  start = time.time()
  dataset = prepare.prepare(config, image_size=224, log=lambda *_: None).dataset
  print(f'made the {name} squares in {time.time() - start:.1f}s')
  return dataset


def _raw_squares(config, root: str):
  """The same images stored as raw uint8 squares (`data.squares_format='raw'`), or None where
  this checkout's config has no such field."""
  import copy

  if 'squares_format' not in config:
    print('raw squares path: not available in this checkout (no data.squares_format)')
    return None
  config = copy.deepcopy(config)
  config.squares_format, config.squares_dir = 'raw', os.path.join(root, 'raw_squares')
  return _squares(config, 'raw 256x256')


def _bare(encoded):
  """tf.io.decode_jpeg of each full original, one image per item."""
  import numpy as np
  import tensorflow as tf

  values = tf.constant(np.array(encoded, dtype=object))
  return (tf.data.Dataset.from_tensor_slices(values).repeat()
          .map(lambda b: tf.io.decode_jpeg(b, channels=3), num_parallel_calls=tf.data.AUTOTUNE,
               deterministic=True).prefetch(256)).as_numpy_iterator()


REFERENCE, BEFORE = 'bare decode of the originals', 'before: pipeline on originals, float32'


def contenders(encoded, encoded_444, dataset_jpeg, dataset_raw=None) -> dict:
  """name: (a function that makes the iterator anew, images per item). Each iterator is the
  whole of that path's host work: the squares paths leave the float work (and the raw path the
  crop) to the device. `encoded_444` (or None) adds the old 4:4:4 reference; `dataset_raw` (or
  None) the raw squares path."""
  from alexnet_jax.data import pipeline

  batch = _BATCH.value

  def train(dataset):
    return lambda: pipeline.train_iterator(dataset, image_size=224, global_batch_size=batch,
                                           seed=0)

  rows = {REFERENCE: (lambda: _bare(encoded), 1)}
  if encoded_444 is not None:
    rows['bare decode, 4:4:4 originals (LOOKS[444])'] = (lambda: _bare(encoded_444), 1)
  rows[BEFORE] = (lambda: _before_pipeline(encoded, batch), batch)
  rows['JPEG squares: train_iterator, uint8'] = (train(dataset_jpeg), batch)
  if dataset_raw is not None:
    rows['raw squares: train_iterator, uint8'] = (train(dataset_raw), batch)
  return rows


def _rounds(rows: dict) -> dict:
  """Per contender, (images/s, images per CPU-second) of each round. Each pipeline is made anew
  for its turn and dropped after it, so that none refills its buffers while another is measured."""
  rates = {name: [] for name in rows}
  for round_ in range(_ROUNDS.value):
    for name, (make, per_item) in rows.items():
      iterator = make()
      rates[name].append(_measure(iterator, per_item, _SECONDS.value))
      del iterator
    print(f'round {round_ + 1}: ' + ', '.join(f'{r[-1][0]:.0f}' for r in rates.values()))
  return rates


def _table(rates: dict) -> None:
  """Medians; ratios to the bare decode and to the pipeline before; core-ms per batch: what one
  core spends on the host's share of one training step's batch."""
  import numpy as np

  wall = {name: np.median([v[0] for v in r]) for name, r in rates.items()}
  per_cpu = {name: np.median([v[1] for v in r]) for name, r in rates.items()}
  print(f'{"":45s} {"img/s":>7s} {"x bare":>7s} {"x before":>8s} {"img/CPU-s":>9s} '
        f'{"core-ms/batch":>13s}')
  for name in rates:
    print(f'{name:45s} {wall[name]:7.0f} {wall[name] / wall[REFERENCE]:7.2f} '
          f'{wall[name] / wall[BEFORE]:8.2f} {per_cpu[name]:9.0f} '
          f'{1e3 * _BATCH.value / per_cpu[name]:13.0f}')


def speed(encoded, look: Look) -> None:
  root = tempfile.mkdtemp(prefix='bench_input_')
  config = _data_config(encoded, root)
  dataset = _squares(config, f'JPEG 256x256 (quality {config.squares_quality})')
  dataset_raw = _raw_squares(config, root)
  encoded_444 = None
  if look.chroma == '420':
    encoded_444 = natural_jpegs(len(encoded), look=LOOKS['444'])
    print(f'4:4:4 originals ({LOOKS["444"]}): {_describe(encoded_444)}')
  rows = contenders(encoded, encoded_444, dataset, dataset_raw)
  print(f'load average before: {_load()}; cores: {os.cpu_count()}')
  rates = _rounds(rows)
  print(f'load average after: {_load()}')
  _table(rates)


def _neighbours(look: Look) -> dict:
  """The look and its neighbours: each lever one step either way, and the other chroma's look."""
  shift = lambda d: tuple(x + d for x in look.noise)  # noqa: E731
  other = LOOKS['444' if look.chroma == '420' else '420']
  return {'chosen': look,
          'quality -1': dataclasses.replace(look, quality=look.quality - 1),
          'quality +1': dataclasses.replace(look, quality=min(look.quality + 1, 100)),
          'noise -2': dataclasses.replace(look, noise=shift(-2)),
          'noise +2': dataclasses.replace(look, noise=shift(2)),
          'noise blurred 1 px': dataclasses.replace(look, noise_blur=1.0),
          'noise minus its 1 px blur': dataclasses.replace(look, noise_blur=-1.0),
          f'the {other.chroma} look': other}


def sizes(n: int, look: Look) -> None:
  """Mean KB and size of the originals and mean KB of their stored squares, for the look and its
  neighbours: how LOOKS were calibrated (targets: ~110 KB, ~400x350, squares ~17-20 KB)."""
  print(f'load average before: {_load()}; {n} images per row')
  for name, each in _neighbours(look).items():
    encoded = natural_jpegs(n, look=each)
    print(f'{name:26s} q{each.quality} {each.chroma} noise {each.noise[0]:g}-{each.noise[1]:g} '
          f'blur {each.noise_blur:+g}: originals {_describe(encoded)}; squares '
          f'{_squares_kb(encoded):5.1f} KB')
  print(f'load average after: {_load()}')


def quality(encoded, look: Look) -> None:
  """Error of the stored square against the exact float rescale, size and window-decode
  rate, for JPEG qualities and chroma subsampling (the originals' look is printed by main)."""
  del look
  import numpy as np
  import tensorflow as tf

  from alexnet_jax.data import image_ops

  squaring = image_ops.Squaring(resize_size=256, resize_method='bilinear', antialias=True,
                                quality=90, truncated_jpeg_fraction=0.0)
  exact = [image_ops.central_square(tf.constant(e), squaring).numpy() for e in encoded]
  rounded = np.stack([np.clip(np.round(x), 0, 255) for x in exact])
  exact = exact_squares = np.stack(exact)
  print(f'load average before: {_load()}; {len(encoded)} images')
  print(f'uint8 rounding alone: mean abs error {np.abs(rounded - exact).mean():.2f}')
  print('quality subsampling  KB   mean-abs  rms   p99.9  crop-vs-full  window decode img/s')
  for q in (85, 90, 95):
    for sub in (True, False):
      stored = [tf.io.encode_jpeg(x.astype(np.uint8), quality=q,
                                  chroma_downsampling=sub).numpy() for x in rounded]
      decoded = np.stack([tf.io.decode_jpeg(s).numpy() for s in stored]).astype(np.float64)
      err = decoded - exact
      crops = np.stack([tf.image.decode_and_crop_jpeg(s, [7, 13, 224, 224]).numpy()
                        for s in stored[:50]]).astype(np.float64)
      crop_err = np.abs(crops - decoded[:50, 7:231, 13:237]).max()
      ds = (tf.data.Dataset.from_tensor_slices(tf.constant(np.array(stored, dtype=object)))
            .repeat().map(lambda b: tf.image.decode_and_crop_jpeg(b, [16, 16, 224, 224]),
                          num_parallel_calls=tf.data.AUTOTUNE).prefetch(256))
      rate, _ = _measure(ds.as_numpy_iterator(), 1, _SECONDS.value / 2)
      print(f'{q:7d} {"4:2:0" if sub else "4:4:4":>11s} {np.mean([len(s) for s in stored]) / 1e3:5.1f}'
            f' {np.abs(err).mean():8.2f} {np.sqrt((err ** 2).mean()):5.2f} '
            f'{np.percentile(np.abs(err), 99.9):6.1f} {crop_err:12.0f} {rate:12.0f}')
  # Training crops: now (the stored square's window) against before (the original's window,
  # resized), same offsets and mirrors (the same seeds).
  seed = lambda i: tf.constant([0, i], tf.int64)  # noqa: E731
  errors, interpolation = [], []
  for i, e in enumerate(encoded):
    stored = image_ops.stored_square(tf.constant(e), squaring)
    now = image_ops.train_crop(stored, seed(i), 256, 224, True, True).numpy()
    before, _ = _before_crop(tf.constant(e), seed(i))
    errors.append(np.abs(now - before.numpy()))
    # The same crop of the exact float square: what rescaling first, then cropping, changes.
    exact = tf.constant(np.clip(np.round(exact_squares[i]), 0, 255).astype(np.uint8))
    lossless = tf.io.encode_jpeg(exact, quality=100, chroma_downsampling=False)
    crop = image_ops.train_crop(lossless, seed(i), 256, 224, True, True).numpy()
    interpolation.append(np.abs(crop - before.numpy()))
  errors, interpolation = np.stack(errors), np.stack(interpolation)
  print(f'training crops, now vs before (quality 90, 4:2:0): mean abs {errors.mean():.2f}, '
        f'rms {np.sqrt((errors ** 2).mean()):.2f}, 99.9th percentile '
        f'{np.percentile(errors, 99.9):.1f}; of which rescaling before cropping (crops of the '
        f'exact square, stored losslessly): mean abs {interpolation.mean():.2f}')
  print(f'load average after: {_load()}')


def _look() -> Look:
  """The chroma's calibrated look, with what the flags override."""
  look = LOOKS[_CHROMA.value]
  if _QUALITY.value is not None:
    look = dataclasses.replace(look, quality=_QUALITY.value)
  if _NOISE.value is not None:
    look = dataclasses.replace(look, noise=tuple(float(x) for x in _NOISE.value))
  if _NOISE_BLUR.value is not None:
    look = dataclasses.replace(look, noise_blur=_NOISE_BLUR.value)
  return look


def main(argv):
  del argv
  import alexnet_jax.data.tf_setup  # noqa: F401  (quiet TensorFlow before anything imports it)
  look = _look()
  if _STUDY.value == 'sizes':
    return sizes(_IMAGES.value, look)
  start = time.time()
  encoded = natural_jpegs(_IMAGES.value, look=look)
  print(f'{len(encoded)} originals ({look}): {_describe(encoded)} (made in '
        f'{time.time() - start:.1f}s)')
  (quality if _STUDY.value == 'quality' else speed)(encoded, look)


if __name__ == '__main__':
  app.run(main)
