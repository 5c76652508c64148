"""`main.py --mode=summary`: the table, the parameter totals, the column exchanges, bad overrides."""

import os
import subprocess
import sys

import pytest

from alexnet_jax import summary
from configs.alexnet import get_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args):
  return subprocess.run([sys.executable, 'main.py', '--mode=summary', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)


def test_paper_net_summary():
  result = _main('--config=configs/alexnet.py')
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert lines[-1] == 'Total parameters: 60,965,224'
  table = {line.split()[0]: line.split()[1] for line in lines if line[:4] in ('conv', 'pool')}
  assert table['conv1'] == '55x55x96'
  assert table['pool1'] == '27x27x96'
  assert table['pool2'] == '13x13x256'
  assert table['pool5'] == '6x6x256'


def test_one_weird_trick_summary_and_override():
  result = _main('--config=configs/alexnet.py:one_weird_trick')
  assert result.stdout.strip().splitlines()[-1] == 'Total parameters: 61,100,840'
  result = _main('--config=configs/alexnet.py', '--config.model.columns=1')
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip().splitlines()[-1] != 'Total parameters: 60,965,224'


def test_unknown_key_fails_clearly():
  result = _main('--config=configs/alexnet.py', '--config.model.lrnn=False')
  assert result.returncode != 0
  assert 'Bad command line' in result.stderr and 'lrn' in result.stderr
  assert 'Traceback' not in result.stderr


def test_exchanged_bytes_by_hand():
  # Paper net, batch 128, float32: each device sends its column's half of the input of conv3
  # (13*13*128), fc6 (6*6*128), fc7 (2048) and fc8 (2048) once forward and once backward, and
  # its 500 logits forward only (each column's logit gradient is its own slice).
  per_example = 2 * (13 * 13 * 128 + 6 * 6 * 128 + 2048 + 2048) + 500
  exchanges = summary.column_exchanges(get_config().model, batch_size=128)
  assert [e.layer for e in exchanges] == ['conv3', 'fc6', 'fc7', 'fc8', 'logits']
  assert sum(e.bytes_per_step for e in exchanges) == 4 * 128 * per_example
  # Data parallelism halves each pair's batch, and so the bytes.
  halved = summary.column_exchanges(get_config().model, batch_size=128, data_parallel=2)
  assert sum(e.bytes_per_step for e in halved) == 4 * 64 * per_example
  assert summary.column_exchanges(get_config('one_column').model, batch_size=128) == []
