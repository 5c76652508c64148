"""Images/s and images/s per core of the training input, on ImageNet-sized natural JPEGs.

    python bench/input_pipeline.py [--images=300] [--seconds=6] [--rounds=3]
    python bench/input_pipeline.py --study=quality   # how the stored squares' JPEG was chosen

Needs the `bench` extra (scikit-image, for its bundled photographs): pip install -e '.[bench]'.

The images: scikit-image's bundled photographs (astronaut, coffee, chelsea, rocket, retina,
hubble_deep_field, immunohistochemistry; nothing is downloaded), each rescaled to a random
ImageNet-like size (shorter side 330-380, aspect 1.0-1.35, mean ~400x375), cropped at a random
place, with random per-channel gain and offset, a random mirror and Gaussian noise (std 8-11:
the photographs are smoother than ImageNet's), saved as JPEG quality 90 without chroma
subsampling: ~100 KB each, like ILSVRC-2012's (mean ~110 KB, ~400x350). The mini ImageNet's
150-pixel images would hide the cost of decoding.

Contenders, on the same images held in memory, alternating in rounds in one run (the machine is
shared: only ratios within a run count), each a tf.data pipeline with the same parallelism:

  bare decode      tf.io.decode_jpeg of the full original (the reference, ratio 1.00)
  before           the pipeline before the stored squares, per image as it was: the crop's
                   window of the original decoded (decode_and_crop_jpeg), resized with
                   antialiasing to 224 of 256, mirrored, PCA colour noise, mean subtracted,
                   float32 out, batched
  squares, uint8   the pipeline now (alexnet_jax.data.pipeline.train_iterator on the stored
                   256x256 squares of the same images): the 224 window decoded, mirrored,
                   uint8 out, batched; the float work runs on the device

Images/s per core is images per CPU-second of this process (user + system), so it is what one
core would do at full use. The load average before and after is printed beside.
"""

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
_STUDY = flags.DEFINE_enum('study', 'speed', ['speed', 'quality'], 'What to measure.')
_NOISE = flags.DEFINE_list('noise', ['8', '11'], 'Range of the std of the noise added to the '
                           'photographs (0-255 units).')

PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'retina', 'hubble_deep_field',
          'immunohistochemistry')


def natural_jpegs(n: int, seed: int = 0, quality: int = 90,
                  noise: tuple[float, float] = (8, 11)) -> list[bytes]:
  """`n` ImageNet-sized JPEGs of natural content (see the module docstring)."""
  import io

  import numpy as np
  import skimage.data
  from PIL import Image

  rng = np.random.default_rng(seed)
  photos = [getattr(skimage.data, name)()[..., :3] for name in PHOTOS]
  out = []
  for i in range(n):
    photo = photos[i % len(photos)]
    short = int(rng.integers(330, 381))
    aspect = float(rng.uniform(1.0, 1.35))
    h, w = (short, int(short * aspect)) if rng.random() < 0.7 else (int(short * aspect), short)
    scale = max(h / photo.shape[0], w / photo.shape[1]) * float(rng.uniform(1.0, 1.5))
    big = Image.fromarray(photo).resize(
        (max(w, round(photo.shape[1] * scale)), max(h, round(photo.shape[0] * scale))),
        Image.BICUBIC)
    y = int(rng.integers(0, big.height - h + 1))
    x = int(rng.integers(0, big.width - w + 1))
    image = np.asarray(big.crop((x, y, x + w, y + h)), np.float64)
    image = image * rng.uniform(0.8, 1.2, 3) + rng.uniform(-20, 20, 3)
    image = image + rng.normal(0, float(rng.uniform(*noise)), image.shape)
    if rng.random() < 0.5:
      image = image[:, ::-1]
    buf = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buf, 'JPEG', quality=quality,
                                                                    subsampling=0)
    out.append(buf.getvalue())
  return out


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


def speed(encoded) -> None:
  import numpy as np
  import tensorflow as tf

  from alexnet_jax.data import pipeline
  from alexnet_jax.data.prepare import prepare
  from configs import alexnet

  root = tempfile.mkdtemp(prefix='bench_input_')
  config = alexnet.get_config().data
  config.dataset, config.folder = 'image_folder', _folder_of(encoded, root)
  config.data_dir, config.train_split, config.eval_split = root, 'train', 'train'
  config.mean, config.cache, config.shuffle_buffer = 'channel', 'memory', 1024
  start = time.time()
  dataset = prepare.prepare(config, image_size=224, log=lambda *_: None).dataset
  print(f'made the 256x256 squares of {len(encoded)} images in {time.time() - start:.1f}s')
  values = tf.constant(np.array(encoded, dtype=object))

  def bare():
    return (tf.data.Dataset.from_tensor_slices(values).repeat()
            .map(lambda b: tf.io.decode_jpeg(b, channels=3), num_parallel_calls=tf.data.AUTOTUNE,
                 deterministic=True).prefetch(256)).as_numpy_iterator()

  # Each contender's pipeline is made anew for each of its turns and dropped after it, so that no
  # pipeline refills its buffers while another is being measured.
  contenders = {
      'bare decode (full original)': (bare, 1),
      'before: training pipeline on the originals, float32': (
          lambda: _before_pipeline(encoded, _BATCH.value), _BATCH.value),
      'now: training pipeline on the 256 squares, uint8': (
          lambda: pipeline.train_iterator(dataset, image_size=224,
                                          global_batch_size=_BATCH.value, seed=0),
          _BATCH.value),
  }
  rates = {name: [] for name in contenders}
  print(f'load average before: {_load()}; cores: {os.cpu_count()}')
  for round_ in range(_ROUNDS.value):
    for name, (make, per_item) in contenders.items():
      iterator = make()
      rates[name].append(_measure(iterator, per_item, _SECONDS.value))
      del iterator
    print(f'round {round_ + 1}: ' + ', '.join(f'{r[-1][0]:.0f}' for r in rates.values()))
  print(f'load average after: {_load()}')
  reference = np.median([r[0] for r in rates['bare decode (full original)']])
  before = np.median([r[0] for r in rates['before: training pipeline on the originals, '
                                          'float32']])
  print(f'{"":55s} {"img/s":>7s} {"x bare":>7s} {"x before":>8s} {"img/CPU-s":>9s}')
  for name, values in rates.items():
    wall = np.median([v[0] for v in values])
    per_cpu = np.median([v[1] for v in values])
    print(f'{name:55s} {wall:7.0f} {wall / reference:7.2f} {wall / before:8.2f} '
          f'{per_cpu:9.0f}')


def quality(encoded) -> None:
  """Error of the stored square against the exact float rescale, size and window-decode
  rate, for JPEG qualities and chroma subsampling."""
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


def main(argv):
  del argv
  import alexnet_jax.data.tf_setup  # noqa: F401  (quiet TensorFlow before anything imports it)
  start = time.time()
  encoded = natural_jpegs(_IMAGES.value, noise=tuple(float(x) for x in _NOISE.value))
  import numpy as np
  from PIL import Image
  import io
  sizes = np.array([Image.open(io.BytesIO(e)).size for e in encoded])
  print(f'{len(encoded)} JPEGs: mean {np.mean([len(e) for e in encoded]) / 1e3:.0f} KB, mean '
        f'{sizes[:, 0].mean():.0f}x{sizes[:, 1].mean():.0f} px (made in '
        f'{time.time() - start:.1f}s)')
  (quality if _STUDY.value == 'quality' else speed)(encoded)


if __name__ == '__main__':
  app.run(main)
