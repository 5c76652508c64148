"""The raw squares (data.squares_format='raw'), against references computed here: each stored
square is the rounded central square of its original (or the decoded JPEG square, when made from
the JPEG squares), in the JPEG squares' order with their labels; undecodable originals are zero
squares listed in the manifest; making resumes; the source's segments, rows and gathered squares;
the stats; the message that names the command."""

import json
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from alexnet_jax.data import (dataset, image_ops, locations, raw_squares, squares,  # noqa: E402
                              undecodable)
from alexnet_jax.data.errors import DatasetError  # noqa: E402
from alexnet_jax.data.prepare import make_squares, stats  # noqa: E402
from alexnet_jax.data.prepare import raw_squares as raw_maker  # noqa: E402
from alexnet_jax.record import fileio  # noqa: E402
from data_testlib import data_config, data_encode, data_random_image  # noqa: E402
import disk_testlib  # noqa: E402

N, BAD, SHARD = 23, 7, 5  # images, the undecodable one, images per shard (5 shards)


def _quiet(*_):
  pass


def _config(root, squares_format='raw', **overrides):
  fields = dict(dataset='image_folder', folder=str(root / 'images'), data_dir=str(root / 'data'),
                train_split='train', eval_split='train', resize_size=32, mean='channel',
                pca_noise='none', squares_format=squares_format)
  return data_config(**{**fields, **overrides})


def _images(root):
  """N JPEGs of several shapes in 3 classes; image BAD holds bytes that are not an image."""
  rng = np.random.default_rng(0)
  for i in range(N):
    folder = root / 'images' / 'train' / f'c{i % 3}'
    folder.mkdir(parents=True, exist_ok=True)
    data = b'not an image at all' * 8 if i == BAD else data_encode(
        data_random_image(rng, 40 + 3 * i, 70 - 2 * i))
    (folder / f'{i}.jpg').write_bytes(data)


@pytest.fixture(scope='module')
def made(tmp_path_factory):
  """An image folder with its JPEG squares and raw squares made, SHARD images per shard; the
  undecodable image's report lines while the raw squares were made."""
  root = tmp_path_factory.mktemp('raw')
  _images(root)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(make_squares, 'SHARD_EXAMPLES', SHARD)
    lines = []
    patch.setattr(undecodable, 'print', lambda *a, **_: lines.append(' '.join(a)), raising=False)
    assert make_squares.make(_config(root), log=_quiet) == ['train']
    assert make_squares.make(_config(root, 'jpeg'), log=_quiet) == ['train']
  return root, lines


def _manifest(config):
  with open(os.path.join(squares.folder(config), squares.MANIFEST)) as f:
    return json.load(f)


def _raw_arrays(config):
  """(pixels, labels) of every raw shard of 'train', concatenated in the manifest's order."""
  folder = squares.folder(config)
  names = [name for name, _ in _manifest(config)['splits']['train']['shards']]
  pixels = [np.load(os.path.join(folder, n)) for n in names]
  labels = [np.load(os.path.join(folder, raw_squares.labels_file(n))) for n in names]
  return np.concatenate(pixels), np.concatenate(labels)


def _jpeg_records(config):
  """(JPEG bytes, label, file name) of every JPEG square of 'train', in order, parsed here."""
  folder = squares.folder(config)
  features = {'image': tf.io.FixedLenFeature([], tf.string),
              'label': tf.io.FixedLenFeature([], tf.int64),
              'file_name': tf.io.FixedLenFeature([], tf.string)}
  out = []
  for name, _ in _manifest(config)['splits']['train']['shards']:
    for record in tf.data.TFRecordDataset(os.path.join(folder, name)).as_numpy_iterator():
      e = tf.io.parse_single_example(record, features)
      out.append((e['image'].numpy(), int(e['label']), e['file_name'].numpy().decode()))
  return out


def test_the_raw_squares_are_the_rounded_central_squares_in_the_jpeg_order(made):
  root, lines = made
  config = _config(root)
  assert squares.folder(config).endswith('__32px_raw')
  assert squares.folder(_config(root, 'jpeg')).endswith('__32px_q90')
  pixels, labels = _raw_arrays(config)
  records = _jpeg_records(_config(root, 'jpeg'))
  assert pixels.shape == (N, 32, 32, 3) and pixels.dtype == np.uint8
  assert labels.tolist() == [label for _, label, _ in records]
  names = [name for _, _, name in records]
  assert sorted(names) == sorted(f'train/c{i % 3}/{i}.jpg' for i in range(N))
  bad = names.index(f'train/c{BAD % 3}/{BAD}.jpg')
  squaring = image_ops.Squaring(resize_size=32, resize_method='bilinear', antialias=True,
                                quality=90, truncated_jpeg_fraction=0.0)
  for i, name in enumerate(names):
    if i == bad:
      continue
    exact = image_ops.central_square(tf.constant((root / 'images' / name).read_bytes()), squaring)
    np.testing.assert_array_equal(
        pixels[i], tf.cast(tf.clip_by_value(tf.round(exact), 0, 255), tf.uint8).numpy())
  assert not pixels[bad].any()
  manifest = _manifest(config)
  assert manifest['splits']['train']['undecodable'] == [[bad, f'train/c{BAD % 3}/{BAD}.jpg']]
  assert manifest['settings'] == {'resize_size': 32, 'resize_method': 'bilinear',
                                  'antialias': True, 'truncated_jpeg_fraction': 0.0,
                                  'squares_format': 'raw'}
  assert [n for _, n in manifest['splits']['train']['shards']] == [5, 5, 5, 5, 3]
  assert [line for line in lines if 'undecodable' in line] == [
      f"warning: undecodable image in image_folder:{root / 'images'}: split 'train', position "
      f'{bad}, file train/c{BAD % 3}/{BAD}.jpg; stored as a placeholder (it keeps its place)']
  assert not os.path.exists(os.path.join(squares.folder(config), 'dataset_info.json'))


def test_raw_squares_from_jpeg_ones_are_the_decoded_jpegs(made, tmp_path, monkeypatch):
  root, _ = made
  monkeypatch.setattr(make_squares, 'SHARD_EXAMPLES', SHARD)
  config = _config(root, squares_dir=str(tmp_path / 'squares'))
  jpeg_config = _config(root, 'jpeg')
  assert raw_maker.raw_from_jpeg(jpeg_config, config, log=_quiet) == ['train']
  pixels, labels = _raw_arrays(config)
  records = _jpeg_records(jpeg_config)
  assert labels.tolist() == [label for _, label, _ in records]
  for square, (image, _, _) in zip(pixels, records):
    expected = tf.io.decode_jpeg(image, channels=3).numpy() if image else np.zeros_like(square)
    np.testing.assert_array_equal(square, expected)
  converted = _manifest(config)['splits']['train']
  original = _manifest(jpeg_config)['splits']['train']
  for key in ('num_examples', 'fingerprint', 'undecodable'):
    assert converted[key] == original[key], key
  assert [n for _, n in converted['shards']] == [n for _, n in original['shards']]
  assert raw_maker.raw_from_jpeg(jpeg_config, config, log=_quiet) == []  # complete: kept
  with pytest.raises(DatasetError, match='not be the same squares'):
    raw_maker.raw_from_jpeg(jpeg_config, _config(root, antialias=False), log=_quiet)


def _identity(path):
  """What rewriting the file would change (a rename gives a new inode)."""
  status = os.stat(path)
  return status.st_ino, status.st_mtime_ns


def test_making_raw_squares_resumes_and_keeps_the_finished_shards(made, tmp_path, monkeypatch):
  root, _ = made
  monkeypatch.setattr(make_squares, 'SHARD_EXAMPLES', SHARD)
  config = _config(root, squares_dir=str(tmp_path / 'squares'))
  make_squares.make(config, log=_quiet)
  before, _ = _raw_arrays(config)
  folder = squares.folder(config)
  manifest = _manifest(config)
  names = [n for n, _ in manifest['splits']['train']['shards']]
  # As if stopped while shard 2 was written: its pixels file missing, the split not complete,
  # and a dead process's temporary file left.
  os.remove(os.path.join(folder, names[2]))
  manifest['splits']['train']['complete'] = False
  squares.write_manifest(folder, manifest)
  leftover = os.path.join(folder, f'.incomplete-999999999-{names[2]}')
  open(leftover, 'wb').close()
  files = [f for n in names if n != names[2] for f in (n, raw_squares.labels_file(n))]
  kept = {f: _identity(os.path.join(folder, f)) for f in files}
  with pytest.raises(DatasetError, match='do not hold the split'):
    dataset.open_dataset(config)
  lines = []
  assert make_squares.make(config, log=lines.append) == ['train']
  assert any('raw squares train: 4 of 5 shards already written' in line for line in lines), lines
  assert {f: _identity(os.path.join(folder, f)) for f in files} == kept
  assert not os.path.exists(leftover)
  np.testing.assert_array_equal(_raw_arrays(config)[0], before)
  assert _manifest(config)['splits']['train']['undecodable'] == manifest['splits']['train'][
      'undecodable']


def test_the_raw_source_has_the_jpeg_layout_and_gathers_the_stored_squares(made):
  root, _ = made
  config = _config(root, train_split='train[:90%]', eval_split='train[90%:]')
  raw = dataset.open_dataset(config)
  jpeg = dataset.open_dataset(_config(root, 'jpeg', train_split='train[:90%]',
                                      eval_split='train[90%:]'))
  assert isinstance(raw.stored, raw_squares.RawSquaresSource)
  layout = lambda segs: [(s.split, s.start, s.count, s.position) for s in segs]  # noqa: E731
  assert layout(raw.stored_train) == layout(jpeg.stored_train)
  assert layout(raw.stored_eval) == layout(jpeg.stored_eval)
  assert [os.path.basename(s.key).split('.raw-')[1] for s in raw.stored_train] == [
      os.path.basename(s.key).split('.tfrecord-')[1] + '.npy' for s in jpeg.stored_train]
  pixels, labels = _raw_arrays(config)
  source = raw.stored
  rows = np.random.default_rng(1).integers(0, N, 40)
  np.testing.assert_array_equal(source.gather(rows), pixels[rows])
  np.testing.assert_array_equal(source.labels(rows), labels[rows])
  bad = _manifest(config)['splits']['train']['undecodable'][0][0]
  assert source.decoded(rows).tolist() == [r != bad for r in rows]
  np.testing.assert_array_equal(source.in_memory().gather(rows), pixels[rows])
  # read(): (row, label, '') per example; a row is the example's place in all the shards.
  segment = raw.stored_eval[0]
  read = list(source.read(segment.key, segment.start, segment.count).as_numpy_iterator())
  shards = _manifest(config)['splits']['train']['shards']
  index = [name for name, _ in shards].index(os.path.basename(segment.key))
  first = sum(n for _, n in shards[:index]) + segment.start
  assert first == segment.position  # one split: its rows are its positions
  assert [int(r) for r, _, _ in read] == list(range(first, first + segment.count))
  assert [int(label) for _, label, _ in read] == labels[first:first + segment.count].tolist()
  assert {name for _, _, name in read} == {b''}
  np.testing.assert_array_equal(source.rows(segment.key, segment.start, segment.count),
                                np.arange(first, first + segment.count))
  # data.cache='memory': the source itself, in memory, not a table of records.
  config.cache = 'memory'
  cached = dataset.open_dataset(config)
  assert isinstance(cached.source, raw_squares.RawSquaresSource)
  assert cached.source is not cached.stored and layout(cached.train) == layout(raw.stored_train)


def test_write_raw_shard_makes_a_store_of_other_pixels(made, tmp_path):
  root, _ = made
  config = _config(root, squares_dir=str(tmp_path / 'other'))
  src, dst = squares.folder(_config(root)), squares.folder(config)
  os.makedirs(dst)
  manifest = _manifest(_config(root))
  rng = np.random.default_rng(2)
  other = []
  for name, n in manifest['splits']['train']['shards']:
    other.append(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    make_squares.write_raw_shard(os.path.join(dst, name), other[-1],
                                 np.load(os.path.join(src, raw_squares.labels_file(name))))
  squares.write_manifest(dst, manifest)
  assert not [f for f in os.listdir(dst) if f.startswith('.')]
  source = dataset.open_dataset(config).stored
  np.testing.assert_array_equal(source.gather(np.arange(N)), np.concatenate(other))
  with pytest.raises(ValueError, match='uint8'):
    make_squares.write_raw_shard(os.path.join(dst, 'x.npy'), np.zeros([2, 32, 32, 3]), [0, 1])


def test_stats_of_raw_squares_are_those_of_their_pixels(made):
  root, _ = made
  config = _config(root, mean='image')
  result = stats.compute(config, log=_quiet)
  pixels, _ = _raw_arrays(config)
  bad = _manifest(config)['splits']['train']['undecodable'][0][0]
  images = np.delete(pixels, bad, axis=0).astype(np.float64)
  values = images.reshape(-1, 3)
  np.testing.assert_allclose(result['mean_image'], images.mean(axis=0), rtol=1e-6)
  np.testing.assert_allclose(result['channel_mean'], values.mean(axis=0), rtol=1e-6)
  std = np.sqrt(np.linalg.eigvalsh(np.cov(values, rowvar=False, bias=True)))
  np.testing.assert_allclose(result['pca_std'], std, rtol=1e-4)
  assert int(result['num_examples']) == N - 1
  assert result['skipped'].tolist() == [
      f"split 'train', position {bad}, file train/c{BAD % 3}/{BAD}.jpg"]
  # The same file for both formats.
  assert locations.stats_path(config, 'x') == locations.stats_path(_config(root, 'jpeg'), 'x')


def test_missing_raw_squares_name_the_command_that_makes_them(tmp_path):
  config = _config(tmp_path)
  with pytest.raises(DatasetError) as error:
    dataset.open_dataset(config)
  message = str(error.value)
  assert '\n' not in message and 'raw images' in message and 'are not made' in message
  assert message.endswith('--config.data.squares_format=raw'), message
  assert 'python -m alexnet_jax.data.prepare' in message


def test_a_full_disk_while_raw_squares_are_made_is_one_line(made, tmp_path, monkeypatch):
  root, _ = made
  monkeypatch.setattr(make_squares, 'SHARD_EXAMPLES', SHARD)
  with disk_testlib.small_disk(tmp_path / 'disk', '1m') as disk:
    config = _config(root, squares_dir=disk)
    # Room for the manifest and a shard or two: the disk fills while shards are written.
    filler = os.path.join(disk, disk_testlib.FILLER)
    os.truncate(filler, disk_testlib.fill(disk) - 40 * 1024)
    with pytest.raises(fileio.WriteFailed) as error:
      make_squares.make(config, log=_quiet)
    assert 'No space left on device' in str(error.value) and '\n' not in str(error.value)
    assert str(error.value.filename).startswith(disk)
    disk_testlib.free(disk)
    assert make_squares.make(config, log=_quiet) == ['train']
    np.testing.assert_array_equal(_raw_arrays(config)[0], _raw_arrays(_config(root))[0])
