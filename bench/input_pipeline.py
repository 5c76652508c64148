"""Images/s of the training input pipeline next to bare JPEG decoding of the same files.

    python bench/input_pipeline.py [--config=configs/alexnet.py:quickstart] [--seconds=20]

Both are measured in the same run, on the same encoded images held in memory, with the same
tf.data parallelism, so the ratio is the cost of the paper's augmentation (crop + resize, mirror,
PCA noise, mean subtraction, batching) over decoding alone. Runs the quickstart's settings
(112 crops of 128) and the paper's (224 crops of 256) on the built-in mini ImageNet (made if
missing).
"""

import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/alexnet.py:quickstart', 'Config.')
_SECONDS = flags.DEFINE_float('seconds', 20.0, 'Measuring time of each figure.')
_BATCH = flags.DEFINE_integer('batch', 64, 'Batch size of the training pipeline.')


def _rate(iterator, images_per_item, seconds):
  next(iterator)  # start-up (graph building, first buffers) is not counted
  for _ in range(3):
    next(iterator)
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    next(iterator)
    count += images_per_item
  return count / (time.perf_counter() - start)


def main(argv):
  del argv
  import numpy as np
  import tensorflow as tf
  from alexnet_jax.data import pipeline

  config = _CONFIG.value
  data = config.data
  info = pipeline.prepare(data)
  opened = pipeline._open(data)  # pylint: disable=protected-access
  encoded = [image for seg in opened.train
             for image, _ in opened.source.read(seg.key, seg.start, seg.count).as_numpy_iterator()]
  sizes = np.array([len(e) for e in encoded])
  shapes = np.array([tf.io.extract_jpeg_shape(e).numpy()[:2] for e in encoded[:500]])
  print(f'dataset: {info.name} {data.train_split} ({info.num_train} images, mean '
        f'{sizes.mean() / 1e3:.1f} KB, mean {shapes[:, 0].mean():.0f}x{shapes[:, 1].mean():.0f} px)')
  print(f'tf.data threads: {data.threads or "default"}, cores: {os.cpu_count()}')

  decode = (tf.data.Dataset.from_tensor_slices(tf.constant(np.array(encoded, dtype=object)))
            .repeat().map(lambda b: tf.io.decode_jpeg(b, channels=3),
                          num_parallel_calls=pipeline._parallel(data), deterministic=True)  # pylint: disable=protected-access
            .prefetch(256).with_options(pipeline._options(data)))  # pylint: disable=protected-access
  decode_rate = _rate(decode.as_numpy_iterator(), 1, _SECONDS.value)
  print(f'bare JPEG decode:                       {decode_rate:8.0f} images/s')
  for label, resize, crop in (('quickstart', data.resize_size, config.model.input_size),
                              ('paper sizes', 256, 224)):
    variant = data.copy_and_resolve_references()
    variant.resize_size = resize
    if resize != data.resize_size:  # the stats file is per size; a mean image costs the same
      variant.mean, variant.channel_mean = 'channel', (127.30, 119.72, 104.91)
    for fused in (True, False):
      variant.fused_decode_crop = fused
      it = pipeline.train_iterator(variant, image_size=crop, global_batch_size=_BATCH.value,
                                   seed=0)
      rate = _rate(it, _BATCH.value, _SECONDS.value)
      print(f'train pipeline, {label:11s} {crop}/{resize}, fused={str(fused):5s}: {rate:8.0f} '
            f'images/s  = {rate / decode_rate:.2f} x bare decode')


if __name__ == '__main__':
  app.run(main)
