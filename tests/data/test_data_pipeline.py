"""The iterators end to end on tiny datasets (the TFDS imagenet2012 layout, image folders), read
through their stored squares: shapes and dtypes, odd files, order and resuming, processes'
shares, evaluation's exact count, undecodable files as placeholders, and an image file's views
as evaluation cuts them."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from alexnet_jax.data import device_preprocess, order, pipeline  # noqa: E402
from alexnet_jax.data.prepare import make_squares, prepare  # noqa: E402
from data_testlib import (data_bad_images, data_config, data_digest, data_encode,  # noqa: E402
                          data_plain, data_random_image)

DatasetError = pipeline.DatasetError


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
  config = data_plain(data_fake_imagenet, eval_split='train')
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
  dataset = pipeline.open_dataset(data_plain(data_fake_imagenet))
  it = pipeline.train_iterator(dataset, image_size=56, global_batch_size=21, seed=0)
  epochs = [[data_digest(im) for im in next(it)['image']] for _ in range(2)]
  assert len(set(epochs[0])) == 21 and set(epochs[0]) == set(epochs[1])
  assert epochs[0] != epochs[1]


def test_processes_read_disjoint_shares_that_cover_the_split(data_fake_imagenet):
  dataset = pipeline.open_dataset(data_plain(data_fake_imagenet, eval_split='train'))
  everything = sorted(data_digest(im) for b in pipeline.eval_iterator(
      dataset, image_size=56, global_batch_size=21, views=1) for im in b['image'][:, 0])
  shares = []
  for index in range(3):
    it = pipeline.train_iterator(dataset, image_size=56, global_batch_size=3, seed=0,
                                 process_index=index, process_count=3)
    n = _share_size(21, index, 3)
    shares.append({data_digest(next(it)['image'][0]) for _ in range(n)})
    assert len(shares[-1]) == n  # one epoch of this process: each of its examples once
  assert not (shares[0] & shares[1] or shares[0] & shares[2] or shares[1] & shares[2])
  assert sorted(set.union(*shares)) == everything


@pytest.mark.parametrize('process_count,global_batch_size', [(3, 6), (4, 20), (5, 5), (1, 8)])
def test_eval_shows_every_example_exactly_once(data_folder, process_count, global_batch_size):
  dataset = pipeline.open_dataset(data_plain(data_folder))  # val: 23 examples
  single = sorted(data_digest(im) for b in pipeline.eval_iterator(
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
      seen += [data_digest(im) for im, m in zip(b['image'][:, 0], b['mask']) if m]
  assert len(set(batch_counts)) == 1  # the same number of batches everywhere
  largest_share = max(_share_size(23, i, process_count) for i in range(process_count))
  assert batch_counts[0] == -(-largest_share // (global_batch_size // process_count))
  assert sorted(seen) == single


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
  plain = pipeline.open_dataset(data_plain(config))
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
  readable = {data_digest(im) for im, _ in examples if im.any()}
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
