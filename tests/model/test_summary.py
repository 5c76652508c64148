"""`main.py --mode=summary`: the table, the parameter totals, the column exchanges (its bad
command lines: tests/cli/test_flags.py)."""

import os
import subprocess
import sys

import pytest

from alexnet_jax.model import summary
from configs.alexnet import get_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
  # The paper's one-GPU net (PAPER.md, run 145-half): one column of conv 48-128-192-192-256 and
  # fc 4096-4096-1000; every layer sees all of the previous one's channels. Weights + biases:
  conv = (11 * 11 * 3 * 48 + 48          # conv1      17,472
          + 5 * 5 * 48 * 128 + 128       # conv2     153,728
          + 3 * 3 * 128 * 192 + 192      # conv3     221,376
          + 3 * 3 * 192 * 192 + 192      # conv4     331,968
          + 3 * 3 * 192 * 256 + 256)     # conv5     442,624
  fc = (6 * 6 * 256 * 4096 + 4096        # fc6    37,752,832 (pool5 is 6x6x256)
        + 4096 * 4096 + 4096             # fc7    16,781,312
        + 4096 * 1000 + 1000)            # fc8     4,097,000
  assert conv + fc == 59_798_312
  assert result.stdout.strip().splitlines()[-1] == 'Total parameters: 59,798,312'


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
