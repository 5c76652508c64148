"""Making the stored squares once: readable by TFDS, resumable, remade when stale; undecodable
images named by the project; the stats command's skipped files; clean errors; atomic stats."""

import json
import os
import signal
import subprocess
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from alexnet_jax.data import image_ops, locations, pipeline, squares, undecodable  # noqa: E402
from alexnet_jax.data.prepare import make_squares, originals, prepare, stats  # noqa: E402
from configs import alexnet  # noqa: E402
from data_testlib import data_config, data_encode, data_random_image  # noqa: E402

DatasetError = pipeline.DatasetError
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _quiet(*_):
  pass


def _folder(root, n=8, bad=(), classes=2, size=(50, 70), seed=0):
  """An image folder of `n` JPEGs (class c<i % classes>, file <i>.jpg); the files in `bad` are
  cut inside their header (nothing can be decoded). Returns its config (squares of 32)."""
  rng = np.random.default_rng(seed)
  for i in range(n):
    folder = root / 'images' / 'train' / f'c{i % classes}'
    folder.mkdir(parents=True, exist_ok=True)
    data = data_encode(data_random_image(rng, *size))
    (folder / f'{i}.jpg').write_bytes(data[:200] if i in bad else data)
  return data_config(**_fields(root))


def _fields(root, **overrides):
  """The data settings of `_folder(root)` (plain values: they also go to other processes)."""
  return {**dict(dataset='image_folder', folder=str(root / 'images'),
                 data_dir=str(root / 'data'), train_split='train', eval_split='train',
                 resize_size=32, mean='channel', pca_noise='none', chunk_size=4,
                 window_chunks=2, shuffle_buffer=8), **overrides}


def _script(fields: dict, body: str) -> str:
  """A Python program that builds the data config of `fields`, then runs `body`."""
  return ('import os, signal, sys, json; sys.path[:0] = [".", "tests"]\n'
          'from data_testlib import data_config\n'
          f'config = data_config(**json.loads({json.dumps(json.dumps(fields))}))\n' + body)


def _records(config, split='train'):
  """(label, file name, decoded image or None) of each stored record, in order, read with TFDS
  from the folder's own metadata."""
  builder = tfds.builder_from_directory(squares.folder(config))
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  return [(int(e['label']), e['file_name'].decode(),
           tf.io.decode_jpeg(e['image']).numpy() if e['image'] else None)
          for e in ds.as_numpy_iterator()]


def test_the_squares_are_a_tfds_dataset_in_the_originals_order(tmp_path):
  config = _folder(tmp_path, n=10)
  info = prepare.prepare(config, log=_quiet)
  assert (info.num_train, info.num_classes) == (10, 2)
  original = originals.open_original(config)
  names = [n.decode() for seg in original.segments('train')
           for _, _, n in original.read(seg.key, seg.start, seg.count).as_numpy_iterator()]
  records = _records(config)
  assert [r[1] for r in records] == names  # the originals' order: slices pick the same images
  assert [r[0] for r in records] == [int(n.split('/')[1][1:]) for n in names]
  squaring = squares.squaring(config)
  for label, name, image in records:
    assert image.shape == (32, 32, 3)
    exact = image_ops.central_square(
        tf.constant((tmp_path / 'images' / name).read_bytes()), squaring).numpy()
    # The central square, rescaled, to JPEG's error (large on tiny noisy images: 2.6 on
    # ImageNet-sized photographs, bench/RESULTS.md).
    assert np.abs(image - exact).mean() < 4


class Stopped(Exception):
  pass


def test_making_the_squares_resumes_after_a_stop(tmp_path, monkeypatch):
  config = _folder(tmp_path, n=10)
  monkeypatch.setattr(make_squares, 'SHARD_EXAMPLES', 3)  # 4 shards
  written, stopped = [], []
  real_write = make_squares._write_shard  # pylint: disable=protected-access

  def stop_after_two(*args, **kwargs):
    if len(written) == 2 and not stopped:
      stopped.append(True)
      raise Stopped  # e.g. ^C, or a kill, while shard 3 is written
    written.append(os.path.basename(args[2]))
    return real_write(*args, **kwargs)

  monkeypatch.setattr(make_squares, '_write_shard', stop_after_two)
  with pytest.raises(Stopped):
    make_squares.make(config, log=_quiet)
  with pytest.raises(DatasetError, match='are not made|do not hold'):  # nothing looks complete
    pipeline.dataset_info(config)
  folder = squares.folder(config)
  kept = {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in written}
  lines = []
  assert make_squares.make(config, log=lines.append) == ['train']
  assert any('2 of 4 shards already written' in line for line in lines), lines
  assert len(written) == 4  # only the two missing shards were written the second time
  assert {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in kept} == kept
  assert not [f for f in os.listdir(folder) if f.startswith('.incomplete')]
  resumed = _records(config)
  # The same records as made in one go.
  monkeypatch.setattr(make_squares, '_write_shard', real_write)
  other = data_config(**_fields(tmp_path, data_dir=str(tmp_path / 'again')))
  make_squares.make(other, log=_quiet)
  again = _records(other)
  assert [r[:2] for r in resumed] == [r[:2] for r in again]
  for a, b in zip(resumed, again):
    np.testing.assert_array_equal(a[2], b[2])


def test_stale_squares_are_made_again(tmp_path):
  config = _folder(tmp_path, n=6)
  assert prepare.prepare(config, log=_quiet).num_train == 6
  assert prepare.prepare(config, log=_quiet).num_train == 6
  # A new image in the folder: the squares no longer match it, and are made again.
  (tmp_path / 'images' / 'train' / 'c0' / 'new.jpg').write_bytes(
      data_encode(data_random_image(np.random.default_rng(9), 40, 40)))
  lines = []
  assert prepare.prepare(config, log=lines.append).num_train == 7
  assert any(line.startswith('squares train: 7 images') for line in lines), lines
  # Other settings: other squares, made again in the same folder ...
  before = _records(config)
  config.antialias = False
  assert prepare.prepare(config, log=_quiet).num_train == 7
  after = _records(config)
  assert [r[1] for r in after] == [r[1] for r in before]
  assert all(not np.array_equal(a[2], b[2]) for a, b in zip(after, before))
  # ... or in their own.
  config.squares_quality = 75
  assert prepare.prepare(config, log=_quiet).num_train == 7
  assert os.path.isdir(squares.folder(config)) and squares.folder(config).endswith('32px_q75')


def test_an_undecodable_image_is_named_once_by_the_project(tmp_path, capfd):
  config = _folder(tmp_path, n=8, bad=(5,))
  # At any log level: the project's own line, not TensorFlow's (which this package silences).
  from absl import logging as absl_logging
  level = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.FATAL)
  try:
    capfd.readouterr()
    dataset = prepare.prepare(config, log=_quiet).dataset
    it = pipeline.train_iterator(dataset, image_size=24, global_batch_size=8, seed=0,
                                 weights=True)
    weights = np.concatenate([next(it)['weight'] for _ in range(3)])  # three epochs
    list(pipeline.eval_iterator(dataset, image_size=24, global_batch_size=8, views=1))
  finally:
    absl_logging.set_verbosity(level)
  err = capfd.readouterr().err
  position = [r[1] for r in _records(config)].index('train/c1/5.jpg')
  lines = [line for line in err.splitlines() if 'undecodable' in line]
  assert lines == [f"warning: undecodable image in image_folder:{tmp_path / 'images'}: split "
                   f"'train', position {position}, file train/c1/5.jpg; stored as a placeholder (it "
                   'keeps its place)'], err
  assert weights.tolist().count(0.0) == 3  # in its place, once per epoch
  # A new process reading the squares names it once, when training first meets it.
  script = _script(_fields(tmp_path), (
      'from alexnet_jax.data import pipeline\n'
      'it = pipeline.train_iterator(pipeline.open_dataset(config), image_size=24,\n'
      '                             global_batch_size=8, seed=0)\n'
      '[next(it) for _ in range(3)]\n'))
  result = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                          text=True, timeout=900,
                          env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '0'})
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [line for line in result.stderr.splitlines() if 'undecodable' in line]
  assert lines == [f"warning: undecodable image in image_folder:{tmp_path / 'images'}: split "
                   f"'train', position {position}, file train/c1/5.jpg; it keeps its place in "
                   'training as a weight-0 placeholder'], result.stderr[-3000:]


def test_the_research_tools_leave_out_undecodable_images(tmp_path):
  """Evaluation counts an undecodable image (a black stand-in); the figures' examples, which
  show and search images, leave it out and keep the others in the split's order."""
  import ml_collections
  from alexnet_jax.tools import inputs
  config = _folder(tmp_path, n=8, bad=(5,))
  dataset = prepare.prepare(config, log=_quiet).dataset
  batches = list(pipeline.eval_iterator(dataset, image_size=24, global_batch_size=8, views=1))
  assert sum(int(b['mask'].sum()) for b in batches) == 8
  assert sum(int((b['mask'] & ~b['decoded']).sum()) for b in batches) == 1
  tool_config = ml_collections.ConfigDict({'data': config, 'model': {'input_size': 24}})
  shown = list(inputs.examples(tool_config, split='eval', batch_size=3))
  records = _records(config)
  expected = [label for label, _, image in records if image is not None]
  assert len(records) == 8 and len(expected) == 7
  assert np.concatenate([b['label'] for b in shown]).tolist() == expected
  assert all(b['image'].reshape(len(b['image']), -1).max(axis=1).min() > 0 for b in shown)


def test_the_stats_command_counts_and_lists_the_files_it_skipped(tmp_path):
  config = _folder(tmp_path, n=16, bad=(3, 10))
  config.mean = 'image'
  make_squares.make(config, log=_quiet)
  lines = []
  path = stats.compute_and_save(config, log=lines.append)
  positions = {name: i for i, (_, name, _) in enumerate(_records(config))}
  assert len(lines) == 1 and 'stats: 14 images, 2 skipped (undecodable): ' in lines[0], lines
  for name in ('train/c1/3.jpg', 'train/c0/10.jpg'):
    assert f"split 'train', position {positions[name]}, file {name}" in lines[0]
  saved = np.load(path)
  assert int(saved['num_examples']) == 14 and len(saved['skipped']) == 2


def test_a_data_dir_that_is_a_file_says_so(tmp_path):
  a_file = tmp_path / 'notes.txt'
  a_file.write_text('mine')
  for config in (data_config(data_dir=str(a_file)), alexnet.get_config('quickstart').data):
    config.data_dir = str(a_file)
    for run in (prepare.prepare, lambda c: prepare.prepare(c, make_large=True)):
      with pytest.raises(DatasetError) as error:
        run(config)
      message = str(error.value)
      assert f'data.data_dir={a_file}: this path is a file' in message
      assert '\n' not in message and 'Set data.data_dir to a folder' in message
  config.data_dir = str(a_file / 'below')
  with pytest.raises(DatasetError, match=f'{a_file} is a file'):
    prepare.prepare(config)
  assert a_file.read_text() == 'mine'


def test_stats_files_are_written_atomically(tmp_path, monkeypatch):
  config = _folder(tmp_path, n=6)
  config.mean = 'image'
  make_squares.make(config, log=_quiet)
  from alexnet_jax.record import fileio
  written = []
  real = fileio.write_atomic
  monkeypatch.setattr(fileio, 'write_atomic', lambda p, d: (written.append(p), real(p, d)))
  path = stats.compute_and_save(config, log=_quiet)
  assert written == [path]  # through the project's atomic writer (temporary file, fsync, rename)
  before = open(path, 'rb').read()
  # Killed inside the write of new stats: the old file stays, whole.
  (tmp_path / 'images' / 'train' / 'c0' / 'more.jpg').write_bytes(
      data_encode(data_random_image(np.random.default_rng(3), 60, 60)))
  script = _script(_fields(tmp_path, mean='image'), (
      'from alexnet_jax.data.prepare import make_squares, stats\n'
      'make_squares.make(config, log=lambda *_: None)\n'
      'os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n'
      'stats.compute_and_save(config)\n'))
  result = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
  assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
  assert open(path, 'rb').read() == before
  assert int(np.load(path)['num_examples']) == 6


def test_undecodable_reports_once_per_image():
  lines = []

  class Stream:
    def write(self, text):
      lines.append(text)

    def flush(self):
      pass

  assert undecodable.report('d', 'train', 7, 'a.JPEG', 'x', stream=Stream())
  assert not undecodable.report('d', 'train', 7, 'a.JPEG', 'y', stream=Stream())
  assert undecodable.report('d', 'validation', 7, '', 'x', stream=Stream())
  assert ''.join(lines).splitlines() == [
      "warning: undecodable image in d: split 'train', position 7, file a.JPEG; x",
      "warning: undecodable image in d: split 'validation', position 7; x"]


def test_the_streaming_pipeline_imports_no_command():
  # Run in a fresh interpreter: what loading the pipeline (and the tools' door to it) loads.
  result = subprocess.run(
      [sys.executable, '-c', 'import sys, json; import alexnet_jax.data.pipeline, '
       'alexnet_jax.data.dataset, alexnet_jax.tools.inputs; print(json.dumps(sorted(m for m '
       'in sys.modules if m.startswith("alexnet_jax"))))'], cwd=ROOT, capture_output=True,
      text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  loaded = json.loads(result.stdout)
  commands = [m for m in loaded
              if m in ('alexnet_jax.data.prepare', 'alexnet_jax.data.stats')
              or m.startswith('alexnet_jax.data.prepare.')]
  assert commands == [], loaded
  assert 'alexnet_jax.data.pipeline' in loaded and 'alexnet_jax.data.tf_setup' in loaded


# Runs a command's entry as `python <entry> ARGS` does, and prints at exit what the environment
# held when TensorFlow was first imported: the log level TensorFlow's own lines obey from then on.
_WATCH_TENSORFLOW = """
import atexit, importlib.abc, os, runpy, sys
seen = []


class Watch(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name == 'tensorflow' and not seen:
      seen.append((os.environ.get('TF_CPP_MIN_LOG_LEVEL'), os.environ.get('TF_ENABLE_ONEDNN_OPTS')))


sys.meta_path.insert(0, Watch())
atexit.register(lambda: print('tensorflow loaded with', *(seen[0] if seen else ['nothing']),
                              flush=True))
sys.argv[1:] = {args!r}
{run}
"""


def _entry(run: str, args: list[str]):
  """The entry `run` (runpy's call) with command line `args`, in a fresh interpreter whose
  environment sets neither variable."""
  env = {k: v for k, v in os.environ.items()
         if k not in ('TF_CPP_MIN_LOG_LEVEL', 'TF_ENABLE_ONEDNN_OPTS')}
  script = _WATCH_TENSORFLOW.format(args=args, run=run)
  return subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                        text=True, timeout=900, env=env)


def test_quiet_by_default_and_verbosity_brings_tensorflow_back(tmp_path):
  """No TensorFlow or oneDNN line on a normal run; --verbosity on the command line sets
  TensorFlow's own log level before TensorFlow loads: through main.py, and through the data
  commands' entries (nothing reads sys.argv at import; each entry sets the environment from its
  parsed --verbosity, then imports what loads TensorFlow)."""
  config = _folder(tmp_path, n=4)
  prepare.prepare(config, log=_quiet)
  data_flags = [f'--config.data.{k}={v}' for k, v in _fields(tmp_path).items()]
  # main.py trains: it prepares (here: finds the squares made), opens the dataset, and stops at
  # start-up at a crop larger than the stored squares (one line), after TensorFlow has loaded.
  main = "runpy.run_path('main.py', run_name='__main__')"
  main_args = ['--config=configs/alexnet.py', f'--workdir={tmp_path / "run"}', *data_flags]
  for verbosity, level in (([], '3'), (['--verbosity=0'], '0')):
    result = _entry(main, main_args + verbosity)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f'tensorflow loaded with {level} 0' in result.stdout, result.stdout[-3000:]
    if not verbosity:  # the run's own one line, and nothing of TensorFlow's
      assert result.stderr.strip().splitlines() == [
          'DatasetError: The crop (224) is larger than data.resize_size (32).'], result.stderr
  # The data commands (`python -m alexnet_jax.data.prepare`, `python -m alexnet_jax.data.stats`).
  for module, verbosity, level in (('alexnet_jax.data.prepare', [], '3'),
                                   ('alexnet_jax.data.stats', ['--verbosity=-1'], '1')):
    run = f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    result = _entry(run, ['--config=configs/alexnet.py', *data_flags, *verbosity])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'tensorflow loaded with {level} 0' in result.stdout, result.stdout[-3000:]
    if not verbosity:
      assert result.stdout.startswith('Ready: image_folder:'), result.stdout
      assert result.stderr.strip() == '', result.stderr[-3000:]
