"""The workdir record: config.json, run.json with git state, metrics.jsonl, config guard."""

import json
import os

import pytest

from alexnet_jax import tracking
from configs.alexnet import get_config


def test_writes_record_and_metrics(tmp_path):
  config = get_config('quickstart')
  wd = tracking.Workdir(str(tmp_path), config, ['main.py', '--config=configs/alexnet.py'])
  wd.log(10, {'loss': 2.5, 'epoch': 0.5, 'learning_rate': 0.01})
  wd.log(20, {'loss': float('nan'), 'epoch': 1.0})
  wd.close()
  saved = json.load(open(tmp_path / 'config.json'))
  assert saved['model']['width'] == 0.25 and saved['batch_size'] == config.batch_size
  run = json.load(open(tmp_path / 'run.json'))[0]
  assert run['argv'][1:] == ['main.py', '--config=configs/alexnet.py']
  assert 'commit' in run and 'dirty' in run
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert rows[0] == {'step': 10, 'loss': 2.5, 'epoch': 0.5, 'learning_rate': 0.01}
  assert rows[1]['loss'] is None  # NaN is written as null: the file stays valid JSON
  assert any(name.startswith('events.out') for name in os.listdir(tmp_path))


def test_refuses_a_different_config_unless_told(tmp_path):
  tracking.Workdir(str(tmp_path), get_config('quickstart'), []).close()
  tracking.Workdir(str(tmp_path), get_config('quickstart'), []).close()  # same config: resumes
  other = get_config('quickstart')
  other.model.lrn = False
  with pytest.raises(tracking.WorkdirError, match='model.lrn: True -> False'):
    tracking.Workdir(str(tmp_path), other, [])
  assert json.load(open(tmp_path / 'config.json'))['model']['lrn'] is True  # untouched
  other.allow_config_change = True
  tracking.Workdir(str(tmp_path), other, []).close()
  assert json.load(open(tmp_path / 'config.json'))['model']['lrn'] is False


def test_truncate_after_drops_rows_a_resume_will_log_again(tmp_path):
  wd = tracking.Workdir(str(tmp_path), get_config('quickstart'), [])
  for step in (10, 20, 30):
    wd.log(step, {'loss': 1.0})
  wd.truncate_after(20)
  assert [json.loads(l)['step'] for l in open(tmp_path / 'metrics.jsonl')] == [10, 20]
