"""The raw squares' path (data.squares_format='raw') against the JPEG squares' path on the same
pixels: the raw store is made by decoding the JPEG squares once, so every crop, mirror, label,
weight and evaluation view must come out the same. The JPEG path is the independent reference
here (TensorFlow's window decode and stateless draws, per example); the raw path gathers whole
squares with NumPy, draws at batch level and crops on the device. Then the raw path's own
guarantees: exact resume, several processes equal to one, every validation example once, and a
train step that cuts the crops itself takes the same step as one fed the cut crops.
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from alexnet_jax import parallel  # noqa: E402
from alexnet_jax.data import device_preprocess, image_ops, pipeline  # noqa: E402
from alexnet_jax.data.prepare import prepare  # noqa: E402
from alexnet_jax.data.prepare import raw_squares as raw_maker  # noqa: E402
from alexnet_jax.data.tf_setup import tf  # noqa: E402
from alexnet_jax.train import steps as steps_lib  # noqa: E402
from configs.alexnet import get_config  # noqa: E402

SIZE = 56     # the crop (the fixture's squares are 64x64)
NET_SIZE = 63  # the smallest input the net takes
BATCH = 6     # 21 training examples: the steps below cross an epoch


@pytest.fixture(scope='module')
def twins(data_fake_imagenet, tmp_path_factory):
  """(JPEG dataset, raw dataset) of the same pixels: the raw store decoded from the JPEG one.

  The JPEG squares here are stored with full-resolution chroma (4:4:4): only then is the window
  the JPEG path decodes alone (decode_and_crop_jpeg) the same as that window of the whole
  decoded square. With the default 4:2:0 chroma the window's edge pixels come out of libjpeg's
  chroma upsampling differently (tests/data/test_crop_draws.py shows it), so the two paths'
  pixels differ there, by decoding, not by where the crop lies."""
  jpeg = data_fake_imagenet.copy_and_resolve_references()
  jpeg.squares_dir = str(tmp_path_factory.mktemp('jpeg_444_squares'))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(image_ops, 'stored_square', _stored_square_444)
    prepare.prepare(jpeg, image_size=SIZE, make_large=True, log=lambda *_: None)
  raw = jpeg.copy_and_resolve_references()
  raw.squares_format = 'raw'
  raw.squares_dir = str(tmp_path_factory.mktemp('raw_squares'))
  raw_maker.raw_from_jpeg(jpeg, raw)
  return pipeline.open_dataset(jpeg), pipeline.open_dataset(raw)


def _stored_square_444(image_bytes, squaring):
  square = tf.cast(tf.clip_by_value(tf.round(image_ops.central_square(image_bytes, squaring)),
                                    0, 255), tf.uint8)
  return tf.io.encode_jpeg(square, quality=squaring.quality, chroma_downsampling=False)


def _cut(batch):
  """The raw batch as the train step sees it after its first operation."""
  return np.asarray(device_preprocess.crop_squares(jnp.asarray(batch['image']),
                                                   jnp.asarray(batch['crop']), SIZE))


def _train(dataset, steps=7, image_size=SIZE, **kwargs):
  it = pipeline.train_iterator(dataset, image_size=image_size, global_batch_size=BATCH, seed=3,
                               weights=True, **kwargs)
  return [next(it) for _ in range(steps)]


@pytest.mark.parametrize('crop,mirror', [('random', True), ('center', False)])
def test_training_batches_equal_the_jpeg_paths(twins, crop, mirror):
  jpeg, raw = (pipeline.open_dataset(_with(d.config, train_crop=crop, mirror=mirror))
               for d in twins)
  for a, b in zip(_train(jpeg), _train(raw)):
    assert b['image'].shape == (BATCH, 64, 64, 3) and b['crop'].shape == (BATCH, 3)
    np.testing.assert_array_equal(_cut(b), a['image'])
    np.testing.assert_array_equal(b['label'], a['label'])
    np.testing.assert_array_equal(b['weight'], a['weight'])
  flips = np.concatenate([b['crop'][:, 2] for b in _train(raw)])
  assert (0 < flips.mean() < 1) if mirror else not flips.any()


def _with(config, **overrides):
  config = config.copy_and_resolve_references()
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


@pytest.mark.parametrize('views', [1, 10])
def test_evaluation_batches_equal_the_jpeg_paths(twins, views):
  jpeg, raw = twins
  a_batches, b_batches = (list(pipeline.eval_iterator(d, image_size=SIZE, global_batch_size=4,
                                                      views=views)) for d in twins)
  assert len(a_batches) == len(b_batches) == 2
  for a, b in zip(a_batches, b_batches):
    assert set(a) == set(b)
    for key in a:
      np.testing.assert_array_equal(b[key], a[key])


def test_a_resumed_raw_stream_is_the_uninterrupted_one(twins):
  raw = twins[1]
  uninterrupted = _train(raw, steps=8)
  for step in (1, 4, 7):
    resumed = _train(raw, steps=1, start_step=step)[0]
    for key in ('image', 'crop', 'label', 'weight'):
      np.testing.assert_array_equal(resumed[key], uninterrupted[step][key])


def test_several_processes_make_the_batches_of_one(twins):
  raw = pipeline.open_dataset(_with(twins[1].config, shards=2))
  one = _train(raw, steps=5)
  halves = [_train(raw, steps=5, process_index=i, process_count=2) for i in range(2)]
  for step, whole in enumerate(one):
    for key in ('image', 'crop', 'label', 'weight'):
      np.testing.assert_array_equal(
          np.concatenate([halves[0][step][key], halves[1][step][key]]), whole[key])


@pytest.mark.parametrize('process_count', [1, 2, 3])
def test_evaluation_shows_every_raw_example_once(twins, process_count):
  raw = pipeline.open_dataset(_with(twins[1].config, eval_split='train'))
  seen = []
  for index in range(process_count):
    for b in pipeline.eval_iterator(raw, image_size=SIZE, global_batch_size=3 * process_count,
                                    views=1, process_index=index, process_count=process_count):
      seen += [im.tobytes() for im, m in zip(b['image'][:, 0], b['mask']) if m]
  jpeg = pipeline.open_dataset(_with(twins[0].config, eval_split='train'))
  everything = [im.tobytes() for b in pipeline.eval_iterator(
      jpeg, image_size=SIZE, global_batch_size=21, views=1) for im in b['image'][:, 0]]
  assert len(seen) == 21 and len(everything) == 21
  assert sorted(seen) == sorted(everything)


def _step_config(squares_format: str):
  config = get_config()
  config.model.width, config.model.input_size, config.model.num_classes = 0.125, NET_SIZE, 1000
  config.mesh.model, config.mesh.data = 1, 1
  config.batch_size = BATCH
  config.data.resize_size, config.data.squares_format = 64, squares_format
  return config


def test_the_train_step_cuts_the_crops_it_would_be_fed(twins):
  """One train step on the raw batch (crops cut inside) and one on the JPEG batch (crops cut by
  the host), from the same state: the same loss and the same new parameters."""
  batches = [_train(d, steps=1, image_size=NET_SIZE)[0] for d in twins]
  results = []
  for squares_format, batch in zip(('jpeg', 'raw'), batches):
    steps = steps_lib.build(_step_config(squares_format), devices=jax.devices()[:1])
    spec = steps.batch_spec(BATCH)
    assert {k: (v.shape, v.dtype) for k, v in spec.items()} == {
        k: (np.shape(v), v.dtype) for k, v in batch.items()}
    state, metrics = steps.train_step(steps.init_state(), parallel.global_batch(steps.mesh, batch),
                                      jnp.float32(0.01), jnp.int32(0))
    results.append((float(metrics['loss']), jax.tree.leaves(state['params'])))
  assert results[0][0] == results[1][0]
  for a, b in zip(results[0][1], results[1][1]):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
