"""Shared test setup: simulated CPU devices, quiet TensorFlow, one compilation cache.

Four CPU devices are simulated for the multi-device tests; this must happen before JAX starts.
"""

import os
import shutil
import signal
import sys
import tempfile

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

# One JAX compilation cache per test process (each xdist worker makes its own), inherited by
# every process it starts: the end-to-end tests run main.py dozens of times on the same tiny net,
# and each run would compile the same programs again (two thirds of a tiny run's CPU). A new folder each time, removed at
# the end: nothing built by other code is ever served. JAX keys each entry by the program and
# its compile options, so a run is what it would be without the cache (the tests that compare
# runs bit for bit hold with it). A size limit turns on JAX's file lock, so that processes that
# start at once never read an entry another is still writing.
_COMPILATION_CACHE = tempfile.mkdtemp(prefix='alexnet-jax-test-xla-cache-')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _COMPILATION_CACHE)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
os.environ.setdefault('JAX_COMPILATION_CACHE_MAX_SIZE', str(8 << 30))

# The Ctrl-C tests send SIGINT to the processes they start, as a terminal would. A test runner
# started in the background of a script (`cmd &`, nohup) has SIGINT ignored, and every process
# it starts would inherit that and rightly ignore the signal (POSIX: a background job is not
# interrupted by Ctrl-C). So the runner takes the terminal's default back for its children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
  signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import numpy as np
import pytest

from tests.data_testlib import DATA_SYNSETS, data_bad_images, data_config, data_encode, data_random_image  # noqa: E402


def pytest_unconfigure(config):
  del config
  shutil.rmtree(_COMPILATION_CACHE, ignore_errors=True)


@pytest.fixture(scope='session')
def data_fake_imagenet(tmp_path_factory):
  """A tiny ILSVRC-2012 in the exact real layout, prepared by TFDS's imagenet2012 builder.

  Train: 3 synsets x 7 images (sizes 60-200 px), one of each bad kind among them; val: 5 images.
  Returns a data config pointing at it (mean and PCA that need no stats file).
  """
  import tensorflow_datasets as tfds
  from alexnet_jax.data.prepare import ilsvrc_archive
  from alexnet_jax.data.prepare import prepare

  root = tmp_path_factory.mktemp('fake_imagenet')
  manual = root / 'manual'
  rng = np.random.default_rng(0)
  bad = list(data_bad_images(rng).values())
  images = {}
  for s, synset in enumerate(DATA_SYNSETS):
    files = []
    for i in range(7):
      h, w = rng.integers(60, 201, size=2)
      data = data_encode(data_random_image(rng, h, w), quality=90)
      if s == 0 and i < len(bad):
        data = bad[i]
      files.append((f'{synset}_{i}.JPEG', data))
    images[synset] = files
  ilsvrc_archive.write_train_tar(str(manual / ilsvrc_archive.TRAIN_TAR), images)
  ilsvrc_archive.write_val_tar(
      str(manual / ilsvrc_archive.VAL_TAR),
      [data_encode(data_random_image(rng, 100, 130)) for _ in range(5)])
  builder = tfds.builder('imagenet2012', data_dir=str(root))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  config = data_config(data_dir=str(root), manual_dir=str(manual), mean='channel',
                       pca_noise='code', resize_size=64, chunk_size=4, window_chunks=2,
                       shuffle_buffer=8)
  # ILSVRC-2012's one command (training only checks): its 64x64 squares.
  prepare.prepare(config, make_large=True, log=lambda *_: None)
  return config


@pytest.fixture(scope='session')
def data_folder(tmp_path_factory):
  """An image folder: train (3 classes x 5) and val (23 images), PNG and JPEG files, with its
  32x32 squares made (under its own data_dir)."""
  root = tmp_path_factory.mktemp('folder')
  from alexnet_jax.data.prepare import prepare
  rng = np.random.default_rng(1)
  for split, per_class in (('train', (5, 5, 5)), ('val', (8, 8, 7))):
    for c, n in enumerate(per_class):
      folder = root / split / f'class_{c}'
      folder.mkdir(parents=True)
      for i in range(n):
        image = data_random_image(rng, *rng.integers(40, 90, size=2))
        if i % 2:
          (folder / f'{i}.png').write_bytes(data_encode(image, 'PNG'))
        else:
          (folder / f'{i}.jpg').write_bytes(data_encode(image))
  data_dir = str(tmp_path_factory.mktemp('folder_data'))  # not inside the folder: no split
  config = data_config(dataset='image_folder', folder=str(root), data_dir=data_dir,
                       train_split='train', eval_split='val', mean='channel', pca_noise='none',
                       resize_size=32, chunk_size=4, window_chunks=2, shuffle_buffer=8)
  prepare.prepare(config, log=lambda *_: None)
  return config
