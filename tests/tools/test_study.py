"""End to end on a tiny scale: the study command (sweep with seeds, ensemble, figures, report,
README block), TensorBoard's conv1 grid at each evaluation and its hyperparameters beside the
final metrics, and --mode=predict on the trained checkpoint, checked against the evaluation
path."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The tiny setup of tests/test_train.py: 6 images per class (54 train, 6 validation), a
# width-0.125 net on 67-pixel crops, batch 8 (6 steps per epoch); 2 epochs, evaluated at each.
TINY = {'data.mini.images_per_class': 6, 'data.resize_size': 72, 'model.input_size': 67,
        'model.width': 0.125, 'batch_size': 8, 'eval.batch_size': 8,
        'checkpoint.every_steps': 4, 'schedule.name': 'constant', 'data.shuffle_buffer': 16,
        'progress': 'none'}


def _flags(data_dir):
  return [f'--config.data.data_dir={data_dir}'] + [f'--config.{k}={v}' for k, v in TINY.items()]


def _env():
  return dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
              TF_CPP_MIN_LOG_LEVEL='2')


@pytest.fixture(scope='module')
def study(tmp_path_factory):
  base = tmp_path_factory.mktemp('study')
  readme = base / 'README.md'
  readme.write_text('# Title\n\n<!-- study:begin -->\nto be replaced\n<!-- study:end -->\nafter\n')
  root = base / 'runs'
  result = subprocess.run(
      [sys.executable, '-m', 'launch.study', f'--root={root}', '--seeds=2', '--only=baseline',
       '--epochs=2', f'--publish={base / "docs" / "study"}', f'--readme={readme}',
       *_flags(base / 'data')],
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1200)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return {'base': base, 'root': root, 'readme': readme, 'data': base / 'data',
          'stdout': result.stdout}


def _rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def test_study_runs_every_stage(study):
  root = study['root']
  finals = [[r for r in _rows(root / 'baseline' / f'seed{s}') if 'val_top1_error_10view' in r][-1]
            for s in (0, 1)]
  assert [f['step'] for f in finals] == [12, 12]
  # The ensemble's members are evaluated exactly as their runs' final evaluation.
  result = json.loads((root / 'baseline' / 'ensemble.json').read_text())
  assert result['count'] == 6 and result['views'] == [1, 10]
  for member, final, seed in zip(result['members'], finals, (0, 1)):
    assert member['workdir'] == f'seed{seed}' and member['step'] == 12  # beside the file
    for key in ('val_top1_error', 'val_top5_error', 'val_top1_error_10view'):
      assert member[key] == pytest.approx(final[key])
  assert 0 <= result['ensemble']['val_top1_error'] <= 100
  text = (root / 'report.md').read_text()
  mean = (finals[0]['val_top1_error'] + finals[1]['val_top1_error']) / 2
  assert f'| baseline | 2 | 12 | {mean:.2f} ± ' in text
  assert "Ensemble of the baseline's 2 seeds" in text
  for name in ('report.csv', 'report_seeds.csv', 'curves.png', 'study.md', 'study.json'):
    assert (root / name).exists(), name
  published = study['base'] / 'docs' / 'study'
  assert {'study.md', 'curves.png', 'figure3.png', 'ensemble.json'} <= set(os.listdir(published))
  # Published workdirs are relative to the study root; no file names this machine's folders
  # (study.md quotes the command as typed, here with absolute paths).
  members = json.loads((published / 'ensemble.json').read_text())['members']
  assert [m['workdir'] for m in members] == ['baseline/seed0', 'baseline/seed1']
  assert json.loads((published / 'figures.json').read_text())['workdir'] == 'baseline/seed0'
  for name in ('ensemble.json', 'figures.json', 'report_seeds.csv', 'report.csv', 'report.md'):
    assert str(study['base']) not in (published / name).read_text(), name
  readme = study['readme'].read_text()
  assert readme.startswith('# Title\n\n<!-- study:begin -->\n') and readme.endswith(
      '<!-- study:end -->\nafter\n')
  assert 'to be replaced' not in readme and '![conv1 kernels](docs/study/figure3.png)' in readme
  assert 'the whole study took' in readme and '--seeds=2' in readme


def test_figures_of_the_trained_net(study):
  folder = study['root'] / 'baseline' / 'seed0' / 'figures'
  record = json.loads((folder / 'figures.json').read_text())
  assert record['step'] == 12 and record['workdir'] == '..'  # relative to the file's folder
  colour = record['figure3']['colour_measure_per_column']
  assert len(colour) == 2 and all(0 <= c <= 1 for c in colour)
  right = record['figure4_right']
  assert right['training_images_searched'] == 54  # the whole training split
  assert len(right['distances']) == 5 and all(d == sorted(d) for d in right['distances'])
  with Image.open(folder / 'figure4_right.png') as image:  # 5 queries x (1 + 6) crops of 67
    assert image.size == (7 * 67 + 7 * 2 + 8, 5 * 67 + 6 * 2)
  assert len(record['figure4_left']['top5']) == 6  # the validation split has 6 images
  with Image.open(folder / 'figure3.png') as image:
    assert image.size[0] > 200


@pytest.fixture(scope='module')
def seed0(study):
  """Seed 0's config, plan and trained parameters, restored once in this process."""
  return _restore(study, 0)


def _restore(study, seed):
  """The seed's trained parameters and the config they were trained with, in this process."""
  from alexnet_jax.tools import trained
  from alexnet_jax.train import restore
  from alexnet_jax.train import setup as train_setup
  from configs.alexnet import get_config
  config = get_config('quickstart')
  config.data.data_dir = str(study['data'])
  for key, value in TINY.items():
    *parents, leaf = key.split('.')
    target = config
    for part in parents:
      target = target[part]
    target[leaf] = value
  config = trained.single_device(config)
  setup = train_setup.plan(config)
  return config, setup, restore.latest(config, str(study['root'] / 'baseline' / f'seed{seed}'),
                                       setup.steps)


def test_tensorboard_has_the_conv1_grid_at_each_evaluation(study, seed0):
  from tensorboard.backend.event_processing import event_accumulator
  from alexnet_jax import figures
  workdir = str(study['root'] / 'baseline' / 'seed0')
  events = event_accumulator.EventAccumulator(workdir, size_guidance={'tensors': 0})
  events.Reload()
  grids = events.Tensors('conv1')
  assert [e.step for e in grids] == [6, 12]  # the evaluation and the final one
  png = grids[-1].tensor_proto.string_val[2]  # width, height, then the encoded image
  _, _, net = seed0
  with Image.open(io.BytesIO(png)) as image:
    np.testing.assert_array_equal(np.asarray(image.convert('RGB')),
                                  figures.conv1_grid(figures.conv1_kernels(net.params)))


def _dotted(tree, prefix=''):
  """config.json's fields as TensorBoard's hyperparameters name them: dotted paths."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_dotted(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = value
  return out


def _hparams_and_events(workdir):
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.plugins.hparams import metadata
  events = event_accumulator.EventAccumulator(str(workdir), size_guidance={'tensors': 0})
  events.Reload()
  content = events.PluginTagToContent('hparams')
  assert list(content) == [metadata.SESSION_START_INFO_TAG]  # one session, no experiment
  info = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
  return info.hparams, events


def test_tensorboard_at_the_sweep_root_lists_each_config_beside_its_final_metrics(study):
  """Each run's session names its config.json, field by field (tuples as text), and its final
  validation metrics are its last scalars: what the HParams dashboard shows side by side."""
  from tensorboard.util import tensor_util
  for seed in (0, 1):
    workdir = study['root'] / 'baseline' / f'seed{seed}'
    hparams, events = _hparams_and_events(workdir)
    config = _dotted(json.loads((workdir / 'config.json').read_text()))
    assert set(hparams) == set(config) and config['seed'] == seed
    for name, value in config.items():
      if isinstance(value, bool):
        assert hparams[name].bool_value is value, name
      elif isinstance(value, (int, float)):
        assert hparams[name].number_value == value, name
      else:  # text; lists (tuples in the config) as the tuple's text
        assert hparams[name].string_value == str(
            tuple(value) if isinstance(value, list) else value), name
    assert hparams['eval.final_views'].string_value == '(1, 10)'
    final = [r for r in _rows(workdir) if 'val_top1_error_10view' in r][-1]
    for key in ('val_top1_error', 'val_top5_error', 'val_top1_error_10view',
                'val_top5_error_10view'):
      last = events.Tensors(key)[-1]
      assert last.step == final['step'] == 12, key
      assert float(tensor_util.make_ndarray(last.tensor_proto)) == pytest.approx(final[key])


def test_predict_names_the_top5_like_evaluation(study, seed0, tmp_path):
  import tensorflow_datasets as tfds
  from alexnet_jax import labels
  from alexnet_jax.tools import inputs
  from alexnet_jax.tools import trained
  config, setup, net = seed0
  # The first validation image, as a file, and its probabilities on the evaluation path.
  builder = tfds.builder('imagenet2012', data_dir=str(study['data']))
  first = next(iter(builder.as_dataset(split=config.data.eval_split, shuffle_files=False,
                                       decoders={'image': tfds.decode.SkipDecoding()})))
  (tmp_path / 'val0.jpg').write_bytes(first['image'].numpy())
  batch = next(inputs.eval_batches(config, views=1, batch_size=8))
  assert int(batch['label'][0]) == int(first['label'])
  probs, _ = trained.make_forward(setup.steps)(net.params, batch['image'][:, 0])
  reference = np.asarray(probs[0])
  (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
  output = tmp_path / 'predictions.json'
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/alexnet.py:quickstart',
       f'--workdir={study["root"] / "baseline" / "seed0"}', '--mode=predict',
       f'--output={output}', *_flags(study['data']), f'--image={tmp_path / "val0.jpg"}',
       str(tmp_path / 'broken.jpg'), str(tmp_path / 'missing.jpg')],
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 1, result.stderr[-3000:]  # some files could not be predicted
  lines = result.stdout.splitlines()
  names = labels.class_names(config.data, 10)
  order = np.argsort(-reference, kind='stable')[:5]
  assert lines[0] == f'{tmp_path / "val0.jpg"} (centre crop):'
  for rank, (line, label) in enumerate(zip(lines[1:6], order), 1):
    assert line == f'  {rank}. {100 * reference[label]:6.2f}%  {names[label]}'
  assert lines[6].startswith(f'{tmp_path / "broken.jpg"}: cannot predict it: not a decodable')
  assert lines[7] == f'{tmp_path / "missing.jpg"}: cannot predict it: No such file or directory'
  saved = json.loads(output.read_text())
  np.testing.assert_allclose([c['probability'] for c in saved[0]['top5']], reference[order],
                             rtol=1e-5)
  assert names[0] == 'tench, Tinca tinca' and saved[0]['top5'][0]['name'] in names
