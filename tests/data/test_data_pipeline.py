"""The pipeline end to end on tiny datasets: TFDS imagenet2012 layout, image folders, mock
imagenette, the built-in mini ImageNet; each read through its stored squares."""

import hashlib
import os
import tarfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from alexnet_jax.data import device_preprocess  # noqa: E402
from alexnet_jax.data import commands, locations, order, pipeline  # noqa: E402
from alexnet_jax.data.prepare import make_squares, prepare, stats  # noqa: E402
from configs import alexnet  # noqa: E402
from data_testlib import data_bad_images, data_config, data_encode, data_random_image  # noqa: E402

DatasetError = pipeline.DatasetError


def _plain(config, **overrides):
  """The config with every random or lossy step off: each example maps to one fixed image."""
  config = config.copy_and_resolve_references()
  settings = dict(train_crop='center', mirror=False, pca_noise='none', mean='none')
  for k, v in {**settings, **overrides}.items():
    setattr(config, k, v)
  return config


def _digest(image):
  return hashlib.sha1(np.round(image, 2).tobytes()).hexdigest()


def _share_size(n, index, count):
  return (index + 1) * n // count - index * n // count


def _quiet(*_):
  pass


def test_fake_imagenet_shapes_dtypes_and_ranges(data_fake_imagenet):
  info = prepare.prepare(data_fake_imagenet, image_size=56)
  assert (info.num_train, info.num_eval, info.num_classes) == (21, 5, 1000)
  batch = next(pipeline.train_iterator(info.dataset, image_size=56, global_batch_size=6,
                                       seed=0))
  # uint8 crops to the device: a quarter of float32's bytes.
  assert batch['image'].shape == (6, 56, 56, 3) and batch['image'].dtype == np.uint8
  assert batch['label'].shape == (6,) and batch['label'].dtype == np.int32
  assert set(batch['label']) <= {0, 1, 2}
  assert batch['image'].std() > 10
  # On the device: 0-255 pixels minus the channel mean, plus colour noise of a few units.
  images = np.asarray(device_preprocess.train_inputs(batch['image'], info.transform, 0, 0))
  mean = np.array(data_fake_imagenet.channel_mean)
  assert np.all(images > -mean - 60) and np.all(images < 255 - mean + 60)
  batches = list(pipeline.eval_iterator(info.dataset, image_size=56, global_batch_size=4,
                                        views=10))
  assert [b['image'].shape for b in batches] == [(4, 10, 56, 56, 3)] * 2
  assert all(b['image'].dtype == np.uint8 for b in batches)
  assert [b['mask'].tolist() for b in batches] == [[True] * 4, [True] + [False] * 3]
  assert all(b['label'].dtype == np.int32 and b['mask'].dtype == np.bool_ for b in batches)


def test_odd_files_of_real_imagenet_pass_preparation_and_the_pipeline(data_fake_imagenet):
  # The fixture's train split holds a truncated JPEG, a greyscale JPEG, a CMYK JPEG and a PNG
  # named .JPEG, none of them under the names TFDS fixes by itself.
  config = _plain(data_fake_imagenet, eval_split='train')
  images = [im for b in pipeline.eval_iterator(pipeline.open_dataset(config), image_size=56,
                                               global_batch_size=7, views=1)
            for im, m in zip(b['image'][:, 0], b['mask']) if m]
  assert len(images) == 21
  assert all(im.max() > 1 for im in images)  # none is the undecodable placeholder (black)
  it = pipeline.train_iterator(pipeline.open_dataset(data_fake_imagenet), image_size=56,
                               global_batch_size=21, seed=3, weights=True)
  for _ in range(3):  # three epochs, each of all 21 files, every one decoded (weight 1)
    batch = next(it)
    assert batch['weight'].tolist() == [1.0] * 21
    assert sorted(batch['label'].tolist()) == [0] * 7 + [1] * 7 + [2] * 7
    assert all(im.max() > 1 for im in batch['image'])


def test_each_odd_kind_of_file_is_decoded_for_training(tmp_path):
  # One class per kind, so the label says which file an example is.
  kinds = data_bad_images(np.random.default_rng(8))
  for c, (kind, data) in enumerate(sorted(kinds.items())):
    folder = tmp_path / 'images' / 'train' / f'{c}_{kind}'
    folder.mkdir(parents=True)
    (folder / 'n0_1.JPEG').write_bytes(data)
  config = data_config(dataset='image_folder', folder=str(tmp_path / 'images'),
                       data_dir=str(tmp_path / 'data'), train_split='train',
                       eval_split='train', resize_size=64, mean='none', pca_noise='none')
  dataset = prepare.prepare(config, log=_quiet).dataset
  batch = next(pipeline.train_iterator(dataset, image_size=56, global_batch_size=4, seed=0,
                                       weights=True))
  assert sorted(batch['label'].tolist()) == [0, 1, 2, 3]
  assert batch['weight'].tolist() == [1.0] * 4  # not one placeholder
  for image in batch['image']:
    assert image.std() > 5  # decoded content (the truncated one: its top half), not a constant


def test_same_seed_and_step_give_the_same_batch_and_resuming_matches(data_fake_imagenet):
  dataset = pipeline.open_dataset(data_fake_imagenet)

  def run(seed, start_step=0, steps=12):
    it = pipeline.train_iterator(dataset, image_size=56, global_batch_size=4,
                                 seed=seed, start_step=start_step)
    return [next(it) for _ in range(steps)]

  uninterrupted = run(seed=5)  # 48 examples: more than two epochs of 21, many windows
  again = run(seed=5)
  other = run(seed=6, steps=1)
  for a, b in zip(uninterrupted, again):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  assert not np.array_equal(other[0]['image'], uninterrupted[0]['image'])
  for step in (1, 5, 6, 11):
    resumed = run(seed=5, start_step=step, steps=1)[0]
    assert set(resumed) == {'image', 'label'}  # 'weight' only when asked for
    np.testing.assert_array_equal(resumed['image'], uninterrupted[step]['image'])
    np.testing.assert_array_equal(resumed['label'], uninterrupted[step]['label'])


def test_each_epoch_shows_every_example_once_in_a_new_order(data_fake_imagenet):
  dataset = pipeline.open_dataset(_plain(data_fake_imagenet))
  it = pipeline.train_iterator(dataset, image_size=56, global_batch_size=21, seed=0)
  epochs = [[_digest(im) for im in next(it)['image']] for _ in range(2)]
  assert len(set(epochs[0])) == 21 and set(epochs[0]) == set(epochs[1])
  assert epochs[0] != epochs[1]


def test_processes_read_disjoint_shares_that_cover_the_split(data_fake_imagenet):
  dataset = pipeline.open_dataset(_plain(data_fake_imagenet, eval_split='train'))
  everything = sorted(_digest(im) for b in pipeline.eval_iterator(
      dataset, image_size=56, global_batch_size=21, views=1) for im in b['image'][:, 0])
  shares = []
  for index in range(3):
    it = pipeline.train_iterator(dataset, image_size=56, global_batch_size=3, seed=0,
                                 process_index=index, process_count=3)
    n = _share_size(21, index, 3)
    shares.append({_digest(next(it)['image'][0]) for _ in range(n)})
    assert len(shares[-1]) == n  # one epoch of this process: each of its examples once
  assert not (shares[0] & shares[1] or shares[0] & shares[2] or shares[1] & shares[2])
  assert sorted(set.union(*shares)) == everything


@pytest.mark.parametrize('process_count,global_batch_size', [(3, 6), (4, 20), (5, 5), (1, 8)])
def test_eval_shows_every_example_exactly_once(data_folder, process_count, global_batch_size):
  dataset = pipeline.open_dataset(_plain(data_folder))  # val: 23 examples
  single = sorted(_digest(im) for b in pipeline.eval_iterator(
      dataset, image_size=24, global_batch_size=23, views=1) for im in b['image'][:, 0])
  assert len(single) == 23
  seen, batch_counts = [], []
  for index in range(process_count):
    batches = list(pipeline.eval_iterator(
        dataset, image_size=24, global_batch_size=global_batch_size, views=1,
        process_index=index, process_count=process_count))
    batch_counts.append(len(batches))
    for b in batches:
      assert b['image'].shape == (global_batch_size // process_count, 1, 24, 24, 3)
      seen += [_digest(im) for im, m in zip(b['image'][:, 0], b['mask']) if m]
  assert len(set(batch_counts)) == 1  # the same number of batches everywhere
  largest_share = max(_share_size(23, i, process_count) for i in range(process_count))
  assert batch_counts[0] == -(-largest_share // (global_batch_size // process_count))
  assert sorted(seen) == single


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
  plain = _plain(config, mean='image')
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
  train = _plain(config)
  train.eval_split = 'train[:60%]'
  first = {_digest(im) for b in pipeline.eval_iterator(pipeline.open_dataset(train), image_size=24,
                                                       global_batch_size=9, views=1)
           for im in b['image'][:, 0]}
  rest = {_digest(im) for b in pipeline.eval_iterator(pipeline.open_dataset(_plain(config)),
                                                      image_size=24, global_batch_size=6, views=1)
          for im in b['image'][:, 0]}
  assert len(first) == 9 and len(rest) == 6 and not first & rest


def test_the_prepare_command_says_where_the_tars_go(tmp_path):
  config = data_config(data_dir=str(tmp_path))
  with pytest.raises(DatasetError, match='ILSVRC2012_img_val.tar') as error:
    prepare.prepare(config, make_large=True, log=_quiet)
  assert str(tmp_path / 'downloads' / 'manual') in str(error.value)


def _folder_with_an_undecodable_file(root, n=5, bad=2):
  """n JPEGs in two classes (c0, c1 alternating); file `bad` is cut inside its header."""
  rng = np.random.default_rng(5)
  for i in range(n):
    folder = root / 'images' / 'train' / f'c{i % 2}'
    folder.mkdir(parents=True, exist_ok=True)
    data = data_encode(data_random_image(rng, 40, 50))
    if i == bad:
      data = data[:200]  # cut inside the header: no row can be decoded
    (folder / f'{i}.jpg').write_bytes(data)
  return data_config(dataset='image_folder', folder=str(root / 'images'),
                     data_dir=str(root / 'data'), train_split='train', eval_split='train',
                     resize_size=32, mean='channel', chunk_size=2, window_chunks=2,
                     shuffle_buffer=4)


def test_an_undecodable_file_is_evaluated_as_a_placeholder_and_counted_once(tmp_path):
  config = _folder_with_an_undecodable_file(tmp_path, bad=3)  # a file of class c1
  info = prepare.prepare(config, log=_quiet)
  assert info.num_train == info.num_eval == 5
  plain = pipeline.open_dataset(_plain(config))
  examples, batch_counts = [], []
  for i in range(2):  # shares of 2 and 3
    batches = list(pipeline.eval_iterator(plain, image_size=24, global_batch_size=2, views=1,
                                          process_index=i, process_count=2))
    batch_counts.append(len(batches))
    examples += [(im, int(label)) for b in batches
                 for im, label, m in zip(b['image'][:, 0], b['label'], b['mask']) if m]
  assert batch_counts == [3, 3]
  # Every example of the split counts exactly once, so the count is info.num_eval; the
  # undecodable one is a black image, with its own label (c1).
  assert len(examples) == info.num_eval
  placeholders = [label for im, label in examples if not im.any()]
  assert placeholders == [1]
  readable = {_digest(im) for im, _ in examples if im.any()}
  assert len(readable) == 4
  assert sorted(label for _, label in examples) == [0, 0, 0, 1, 1]


def test_an_undecodable_file_keeps_every_batch_a_function_of_seed_and_step(tmp_path):
  config = _folder_with_an_undecodable_file(tmp_path)  # random crops and mirrors
  dataset = prepare.prepare(config, log=_quiet).dataset

  def run(start_step, steps):
    it = pipeline.train_iterator(dataset, image_size=24, global_batch_size=2, seed=1,
                                 start_step=start_step, weights=True)
    return [next(it) for _ in range(steps)]

  uninterrupted = run(0, 15)  # 30 examples: six epochs of 5, one file undecodable in each
  weights = np.concatenate([b['weight'] for b in uninterrupted])
  assert weights.reshape(6, 5).sum(1).tolist() == [4.0] * 6  # in its place, once per epoch
  for b in uninterrupted:
    assert not b['image'][b['weight'] == 0].any()  # the placeholder: a black crop
    assert b['image'][b['weight'] == 1].std() > 1
  for step in range(1, 15):
    resumed = run(step, 1)[0]
    for key in ('image', 'label', 'weight'):
      np.testing.assert_array_equal(resumed[key], uninterrupted[step][key],
                                    err_msg=f'step {step}, {key}')


def test_training_on_files_nothing_can_be_decoded_from_stops(tmp_path):
  for i in range(4):
    folder = tmp_path / 'images' / 'train' / f'c{i % 2}'
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f'{i}.jpg').write_bytes(b'not an image at all')
  config = data_config(dataset='image_folder', folder=str(tmp_path / 'images'),
                       data_dir=str(tmp_path / 'data'), train_split='train',
                       eval_split='train', resize_size=32, mean='channel')
  dataset = prepare.prepare(config, log=_quiet).dataset
  with pytest.raises(DatasetError, match='could be decoded'):
    next(pipeline.train_iterator(dataset, image_size=24, global_batch_size=2, seed=0))


def test_labels_outside_the_classes_fail_loudly(data_fake_imagenet):
  # The fixture's labels are 0, 1 and 2; a mini_imagenet config of 2 classes expects 0 and 1.
  config = data_fake_imagenet.copy_and_resolve_references()
  config.dataset, config.eval_split, config.mini.num_classes = 'mini_imagenet', 'train', 2
  dataset = pipeline.open_dataset(config)
  with pytest.raises(DatasetError, match=r'label outside 0\.\.1') as error:
    it = pipeline.train_iterator(dataset, image_size=56, global_batch_size=3, seed=0)
    for _ in range(7):  # one epoch: a 2 comes up
      next(it)
  assert 'data.mini.num_classes' in str(error.value)
  with pytest.raises(DatasetError, match=r'label outside 0\.\.1'):
    list(pipeline.eval_iterator(dataset, image_size=56, global_batch_size=7, views=1))
  # Every example out of range: an error at once, never an iterator that skips forever.
  config.mini.num_classes = 0
  with pytest.raises(DatasetError, match='label outside'):
    next(pipeline.train_iterator(pipeline.open_dataset(config), image_size=56,
                                 global_batch_size=21, seed=0))


def test_resuming_far_into_training_does_not_replay_the_epochs(data_fake_imagenet,
                                                              monkeypatch):
  # Step 10^7 of batch 4 lies ~2 million epochs in; resuming must start reading at the window
  # that holds stream position 4 * 10^7, not at position 0.
  drawn = []
  window_plans = order.window_plans

  def recorded(*args):
    for plan in window_plans(*args):
      drawn.append(plan)
      yield plan

  monkeypatch.setattr(order, 'window_plans', recorded)
  batch = next(pipeline.train_iterator(pipeline.open_dataset(data_fake_imagenet), image_size=56,
                                       global_batch_size=4, seed=0, start_step=10**7))
  assert batch['image'].shape == (4, 56, 56, 3)
  first_position, end_position = int(drawn[0][3]), int(drawn[0][4])
  assert first_position == 4 * 10**7 < end_position


def test_an_image_file_gives_exactly_what_evaluation_feeds(data_folder):
  # The originals of the val split (PNG and JPEG, 40-90 px), named by the stored squares
  # themselves (read by TFDS, in the split's order), against the pipeline's evaluation batches.
  builder = tfds.builder_from_directory(make_squares.squares.folder(data_folder))
  names = [e['file_name'].decode() for e in builder.as_dataset(
      split='val', shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding()}).as_numpy_iterator()]
  assert len(names) == 23
  for views in (1, 10):
    batch = next(pipeline.eval_iterator(pipeline.open_dataset(data_folder), image_size=24,
                                        global_batch_size=23, views=views))
    for name, expected in zip(names, batch['image']):
      with open(os.path.join(data_folder.folder, name), 'rb') as f:
        got = pipeline.eval_views_of_file(data_folder, f.read(), image_size=24, views=views)
      assert got.dtype == np.uint8 and got.shape == (views, 24, 24, 3)
      np.testing.assert_array_equal(got, expected)
  with pytest.raises(pipeline.UndecodableImage, match='not a decodable image .*JPEG'):
    pipeline.eval_views_of_file(data_folder, b'\xff\xd8 not really a jpeg', image_size=24,
                                views=1)
  with pytest.raises(DatasetError, match='larger than data.resize_size'):
    pipeline.eval_views_of_file(data_folder, b'', image_size=64, views=1)
