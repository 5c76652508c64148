"""Each dataset made once and checked at start-up: image folders, mock imagenette, the built-in
mini ImageNet (made when missing, never over someone else's data), the stats, and the one-line
errors with the commands they print."""

import os
import tarfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from alexnet_jax.data import commands, device_preprocess, locations, pipeline  # noqa: E402
from alexnet_jax.data.prepare import make_squares, prepare, stats  # noqa: E402
from configs import alexnet  # noqa: E402
from data_testlib import (data_config, data_digest, data_encode, data_plain,  # noqa: E402
                          data_random_image)

DatasetError = pipeline.DatasetError


def _quiet(*_):
  pass


def test_empty_or_missing_splits_fail_early_and_clearly(data_fake_imagenet, tmp_path):
  config = data_fake_imagenet.copy_and_resolve_references()
  config.eval_split = 'train[100%:]'
  with pytest.raises(DatasetError, match='empty'):
    prepare.prepare(config)
  config.eval_split = 'test'
  with pytest.raises(DatasetError, match="'test' is not in"):
    prepare.prepare(config, make_large=True, log=_quiet)
  with pytest.raises(DatasetError, match="split.*test"):  # training only checks the squares
    prepare.prepare(config)
  missing = data_config(data_dir=str(tmp_path / 'nothing'))
  with pytest.raises(DatasetError, match='ILSVRC2012_img_train.tar') as error:
    prepare.prepare(missing)
  assert 'python -m alexnet_jax.data.prepare' in str(error.value)
  assert str(tmp_path / 'nothing') in str(error.value)
  # The command prepares what this config reads: its data_dir, not the default one.
  flag = f'--config.data.data_dir={tmp_path / "nothing"}'
  assert f'alexnet_jax.data.prepare --config=configs/alexnet.py {flag}' in str(error.value)
  assert not (tmp_path / 'nothing').exists()  # training made nothing


def test_printed_commands_carry_the_data_settings_that_differ():
  assert commands.command(commands.PREPARE_COMMAND, data_config()) == commands.PREPARE_COMMAND
  config = data_config(data_dir='/data/tfds', manual_dir='/data/tars', train_split='train[:50%]',
                       resize_size=128, mean='channel')
  assert commands.command(commands.PREPARE_COMMAND, config, '--overwrite') == (
      commands.PREPARE_COMMAND + ' --config.data.data_dir=/data/tfds '
      "--config.data.manual_dir=/data/tars '--config.data.train_split=train[:50%]' "
      '--config.data.resize_size=128 --overwrite')
  stats_command = commands.command(commands.STATS_COMMAND, config)
  assert "'--config.data.train_split=train[:50%]'" in stats_command  # quoted for the shell
  assert '--config.data.resize_size=128' in stats_command
  mini = alexnet.get_config('quickstart').data
  assert commands.command(commands.MINI_COMMAND, mini) == commands.MINI_COMMAND
  mini.data_dir, mini.mini.images_per_class = '/tmp/m', 12
  assert commands.command(commands.MINI_COMMAND, mini) == (
      commands.MINI_COMMAND + ' --config.data.data_dir=/tmp/m '
      '--config.data.mini.images_per_class=12')


def test_the_commands_know_the_configs_defaults():
  # A flag is printed only where the user's config differs from the one the command names.
  for defaults, config in ((commands.PAPER_DATA, alexnet.get_config().data),
                           (commands.QUICKSTART_DATA, alexnet.get_config('quickstart').data)):
    for field, value in defaults.items():
      got = config
      for part in field.split('.'):
        got = got[part]
      assert got == value, field


def test_labels_must_fit_the_model(data_fake_imagenet, data_folder):
  with pytest.raises(DatasetError, match='model.num_classes=1000'):
    prepare.prepare(data_fake_imagenet, model_num_classes=10)
  assert prepare.prepare(data_folder, model_num_classes=3).num_classes == 3


def test_preprocessing_settings_are_checked_at_start_up(data_folder):
  config = data_folder.copy_and_resolve_references()
  assert prepare.prepare(config, image_size=24).num_classes == 3
  config.channel_mean = ('abc',)  # what `--config.data.channel_mean=abc` makes
  with pytest.raises(DatasetError, match='three numbers'):
    prepare.prepare(config, image_size=24)
  config.channel_mean = (1.0, 2.0)
  with pytest.raises(DatasetError, match='three numbers'):
    prepare.prepare(config, image_size=24)
  with pytest.raises(DatasetError, match='larger than data.resize_size'):
    prepare.prepare(data_folder, image_size=64)


def _stored_squares(config):
  """The decoded stored squares of the training split, read and decoded by TFDS itself
  (independently of the pipeline), in the split's order."""
  builder = tfds.builder_from_directory(make_squares.squares.folder(config))
  ds = builder.as_dataset(split=config.train_split, shuffle_files=False)
  return [e['image'] for e in ds.as_numpy_iterator()]


def test_stats_mean_image_and_pca_and_their_use(tmp_path):
  # Images already at the stored size (32x32 PNG): the stored squares are their JPEGs.
  rng = np.random.default_rng(4)
  images = [data_random_image(rng, 32, 32) for _ in range(6)]
  for i, image in enumerate(images):
    folder = tmp_path / 'images' / 'train' / f'c{i % 2}'
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f'{i}.png').write_bytes(data_encode(image, 'PNG'))
  config = data_config(dataset='image_folder', folder=str(tmp_path / 'images'),
                       data_dir=str(tmp_path / 'data'), train_split='train',
                       eval_split='train', resize_size=32, mean='image', pca_noise='stats',
                       stats_dir=str(tmp_path / 'stats'))
  make_squares.make(config, log=_quiet)
  with pytest.raises(DatasetError, match='python -m alexnet_jax.data.stats'):
    pipeline.dataset_info(config)
  stats.compute_and_save(config, log=_quiet)
  saved = np.load(locations.stats_path(config, pipeline.dataset_info(config).name))
  # Exactly the mean and PCA of the stored squares ...
  pixels = np.stack(_stored_squares(config)).astype(np.float64)
  np.testing.assert_allclose(saved['mean_image'], pixels.mean(0), atol=1e-3)
  covariance = np.cov(pixels.reshape(-1, 3), rowvar=False, bias=True)
  v = saved['pca_vectors']
  np.testing.assert_allclose(v @ np.diag(saved['pca_std'] ** 2) @ v.T, covariance, rtol=1e-3)
  # ... which are the originals to within JPEG's error.
  originals = np.stack(images).astype(np.float64)
  assert np.abs(saved['mean_image'] - originals.mean(0)).mean() < 3  # noisy tiny images
  assert saved['skipped'].tolist() == [] and int(saved['num_examples']) == 6
  # Each central crop is a stored square's (decoding only the window changes a few edge
  # pixels by a few units: JPEG's chroma upsampling), and the device subtracts the mean image's
  # central crop.
  config.pca_noise = 'none'
  plain = data_plain(config, mean='image')
  transform = pipeline.dataset_info(plain, image_size=24).transform
  batch = next(pipeline.eval_iterator(pipeline.open_dataset(plain), image_size=24,
                                      global_batch_size=6, views=1))
  crops = batch['image'][:, 0].astype(np.float64)
  for crop in crops:
    assert min(np.abs(crop - p[4:28, 4:28]).mean() for p in pixels) < 0.5
  got = np.asarray(device_preprocess.eval_inputs(batch['image'], transform))[:, 0]
  np.testing.assert_allclose(got, crops - saved['mean_image'][4:28, 4:28], atol=1e-4)


def test_image_folder_dataset(data_folder):
  info = prepare.prepare(data_folder)
  assert (info.num_train, info.num_eval, info.num_classes) == (15, 23, 3)
  batch = next(pipeline.train_iterator(info.dataset, image_size=24, global_batch_size=15, seed=0))
  assert batch['image'].shape == (15, 24, 24, 3)
  assert sorted(batch['label'].tolist()) == [0] * 5 + [1] * 5 + [2] * 5  # one epoch


def test_imagenette_through_tfds_mock_data(tmp_path):
  config = data_config(dataset='imagenette', data_dir=str(tmp_path), train_split='train',
                       eval_split='validation', mean='channel', resize_size=64)
  with tfds.testing.mock_data(num_examples=7):
    info = prepare.prepare(config, model_num_classes=10, log=_quiet)
    assert (info.num_train, info.num_eval, info.num_classes) == (7, 7, 10)
    batch = next(pipeline.train_iterator(info.dataset, image_size=56, global_batch_size=4,
                                         seed=0))
    assert batch['image'].shape == (4, 56, 56, 3) and batch['label'].max() < 10
    batches = list(pipeline.eval_iterator(info.dataset, image_size=56, global_batch_size=4,
                                          views=10))
    assert sum(b['mask'].sum() for b in batches) == 7


def _files(folder):
  """(path, inode, size, mtime) of every file under `folder`: a rewrite changes one of them."""
  out = set()
  for root, _, names in os.walk(folder):
    for name in names:
      st = os.stat(os.path.join(root, name))
      out.add((os.path.join(root, name), st.st_ino, st.st_size, st.st_mtime_ns))
  return out


def test_mini_imagenet_is_made_when_missing_and_is_the_imagenet_layout(tmp_path):
  config = alexnet.get_config('quickstart').data
  config.data_dir = str(tmp_path / 'mini')
  config.mini.images_per_class = 12
  info = prepare.prepare(config, model_num_classes=10, image_size=112, log=_quiet)
  assert (info.num_train, info.num_eval, info.num_classes) == (108, 12, 10)
  assert info.name.startswith('imagenet2012/')
  with tarfile.open(tmp_path / 'mini' / 'downloads' / 'manual' / 'ILSVRC2012_img_train.tar') as t:
    names = t.getnames()
  assert names[0] == 'n01440764.tar' and len(names) == 10
  assert os.path.exists(info.stats_file)
  stored = make_squares.squares.folder(config)
  assert [e.name for e in os.scandir(stored) if e.name.endswith('-of-00001')] == [
      'squares-train.tfrecord-00000-of-00001']  # the 128x128 squares of its train split
  made = _files(tmp_path / 'mini')
  prepare.prepare(config)  # already made: nothing is made again or rewritten
  assert _files(tmp_path / 'mini') == made
  batch = next(pipeline.train_iterator(info.dataset, image_size=112, global_batch_size=108,
                                       seed=0))
  assert batch['image'].shape == (108, 112, 112, 3)
  assert sorted(set(batch['label'].tolist())) == list(range(10))
  images = np.asarray(device_preprocess.train_inputs(batch['image'], info.transform, 0, 0))
  assert abs(images.mean()) < 0.5 and 0.3 < images.std() < 3  # input_scale 1/60
  config.eval_split = 'validation'
  with pytest.raises(DatasetError, match='placeholder'):
    prepare.prepare(config)
  # Other settings: its own earlier output is replaced, anything else in the folder is kept.
  (tmp_path / 'mini' / 'notes.txt').write_text('mine')
  first_tar = (tmp_path / 'mini' / 'downloads' / 'manual' / 'ILSVRC2012_img_train.tar').read_bytes()
  config.eval_split, config.mini.seed = 'train[90%:]', 1
  assert prepare.prepare(config, log=_quiet).num_train == 108
  assert (tmp_path / 'mini' / 'notes.txt').read_text() == 'mine'
  assert (tmp_path / 'mini' / 'downloads' / 'manual' /
          'ILSVRC2012_img_train.tar').read_bytes() != first_tar


def _precious(path):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b'precious: not made by the mini ImageNet')
  return path


def _untouched(*paths):
  return all(p.read_bytes() == b'precious: not made by the mini ImageNet' for p in paths)


def test_making_the_mini_imagenet_never_deletes_what_it_did_not_make(tmp_path, monkeypatch):
  from alexnet_jax.data.prepare import mini_imagenet
  # data_dir='' is TFDS's default folder, where a real ILSVRC-2012 usually is.
  tfds_home = tmp_path / 'tensorflow_datasets'
  monkeypatch.setattr(tfds.core.constants, 'DATA_DIR', str(tfds_home))
  real = [_precious(tfds_home / 'imagenet2012' / '5.1.0' / 'imagenet2012-train.tfrecord-00000'),
          _precious(tfds_home / 'downloads' / 'manual' / 'ILSVRC2012_img_train.tar'),
          _precious(tfds_home / 'alexnet_jax_stats' / 'mean.npz')]
  config = alexnet.get_config('quickstart').data
  config.data_dir = ''
  assert locations.data_dir(config) == str(tfds_home)
  for make in (prepare.prepare, mini_imagenet.make,
               lambda c: prepare.prepare(c, make_large=True)):
    with pytest.raises(DatasetError, match='did not make') as error:
      make(config)
    assert 'data.data_dir' in str(error.value)
    assert '~/.cache/alexnet_jax/mini_imagenet' in str(error.value)
    assert _untouched(*real)
  assert not (tfds_home / 'mini_imagenet.json').exists()

  # An empty data_dir, but manual_dir or stats_dir point at someone else's files.
  config.data_dir = str(tmp_path / 'new')
  config.manual_dir = str(tfds_home / 'downloads' / 'manual')
  with pytest.raises(DatasetError, match='ILSVRC2012_img_train.tar, which it did not make'):
    prepare.prepare(config)
  config.manual_dir = ''
  config.stats_dir = str(tmp_path / 'stats')
  source_name = tfds.builder('imagenet2012', data_dir=config.data_dir).info.full_name
  stats_file = _precious(tmp_path / 'stats' / os.path.basename(
      locations.stats_path(config, source_name)))
  with pytest.raises(DatasetError, match='which it did not make'):
    prepare.prepare(config)
  config.stats_dir = ''
  config.squares_dir = str(tmp_path / 'squares')
  shard = _precious(tmp_path / 'squares' / os.path.basename(
      make_squares.squares.folder(config, source_name)) / 'squares-train.tfrecord-00000-of-00001')
  with pytest.raises(DatasetError, match='which it did not make'):
    prepare.prepare(config)
  assert _untouched(*real, stats_file, shard)
  assert not (tmp_path / 'new').exists()  # refused before writing anything


def test_the_mini_classes_differ_in_colour_and_shape():
  from alexnet_jax.data.prepare import mini_imagenet
  rng = np.random.default_rng(0)
  means = [np.mean([mini_imagenet.draw(c, rng, 80, 120).mean((0, 1)) for _ in range(20)], 0)
           for c in range(10)]
  sides = {mini_imagenet.draw(0, rng, 80, 220).shape[:2] for _ in range(20)}
  assert len(sides) > 15  # varied sizes and aspect ratios
  assert min(np.linalg.norm(a - b) for i, a in enumerate(means) for b in means[i + 1:]) > 3


def test_a_half_deleted_dataset_fails_at_start_up(data_fake_imagenet, tmp_path):
  import shutil
  root = tmp_path / 'copy'
  for folder in ('imagenet2012', 'alexnet_jax_squares'):
    shutil.copytree(os.path.join(data_fake_imagenet.data_dir, folder), root / folder)
  config = data_fake_imagenet.copy_and_resolve_references()
  config.data_dir = str(root)
  assert prepare.prepare(config).num_train == 21
  # A stored square's shard is gone: training stops at start-up with the command.
  shard = next((root / 'alexnet_jax_squares').rglob('squares-train.tfrecord-*'))
  shard.unlink()
  with pytest.raises(DatasetError, match='incomplete') as error:
    prepare.prepare(config)
  flags = f'--config.data.data_dir={root} --config.data.manual_dir={data_fake_imagenet.manual_dir}'
  assert f'python -m alexnet_jax.data.prepare --config=configs/alexnet.py {flags}' in str(
      error.value)
  # ... and an original's file too: making the squares again needs the tars, so the message
  # says where they go, and the command carries this config's data_dir and manual_dir.
  train_file = next((root / 'imagenet2012').rglob('imagenet2012-train.tfrecord-*'))
  train_file.unlink()
  with pytest.raises(DatasetError, match='incomplete') as error:
    prepare.prepare(config, make_large=True, log=_quiet)
  message = str(error.value)
  assert 'ILSVRC2012_img_train.tar' in message and data_fake_imagenet.manual_dir in message
  assert f'{flags} --config.data.resize_size=64 --overwrite' in message


def test_image_folder_split_slices(data_folder):
  config = data_folder.copy_and_resolve_references()
  config.train_split, config.eval_split = 'train[:60%]', 'train[60%:]'
  info = prepare.prepare(config, log=_quiet)
  assert (info.num_train, info.num_eval) == (9, 6)
  first_part = pipeline.open_dataset(data_plain(config, eval_split='train[:60%]'))
  first = {data_digest(im) for b in pipeline.eval_iterator(first_part, image_size=24,
                                                           global_batch_size=9, views=1)
           for im in b['image'][:, 0]}
  rest = {data_digest(im) for b in pipeline.eval_iterator(pipeline.open_dataset(data_plain(config)),
                                                          image_size=24, global_batch_size=6,
                                                          views=1)
          for im in b['image'][:, 0]}
  assert len(first) == 9 and len(rest) == 6 and not first & rest


def test_the_prepare_command_says_where_the_tars_go(tmp_path):
  config = data_config(data_dir=str(tmp_path))
  with pytest.raises(DatasetError, match='ILSVRC2012_img_val.tar') as error:
    prepare.prepare(config, make_large=True, log=_quiet)
  assert str(tmp_path / 'downloads' / 'manual') in str(error.value)
