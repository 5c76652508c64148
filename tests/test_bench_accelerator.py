"""bench/accelerator.py, the benchmark waiting for the first GPU: its model-FLOP count against
the paper's layer table worked out by hand, and its --smoke run on the CPU."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'bench'))

import accelerator  # noqa: E402

# PAPER.md's layer table: (output positions, outputs, inputs seen per output) of each layer.
PAPER_LAYERS = {
    'conv1': (55 * 55, 96, 11 * 11 * 3), 'conv2': (27 * 27, 256, 5 * 5 * 48),
    'conv3': (13 * 13, 384, 3 * 3 * 256), 'conv4': (13 * 13, 384, 3 * 3 * 192),
    'conv5': (13 * 13, 256, 3 * 3 * 192), 'fc6': (1, 4096, 6 * 6 * 256),
    'fc7': (1, 4096, 4096), 'fc8': (1, 1000, 4096)}


def test_model_flops_equal_the_paper_tables_count():
  from configs.alexnet import get_config
  macs = {name: p * o * i for name, (p, o, i) in PAPER_LAYERS.items()}
  # Forward, then the gradients of the input and of the weights; conv1 has no input gradient.
  expected = 2 * (2 * macs['conv1'] + 3 * sum(m for n, m in macs.items() if n != 'conv1'))
  assert accelerator.model_flops_per_image(get_config().model) == pytest.approx(expected)
  assert 4.1e9 < expected < 4.2e9  # the paper net trains at ~4.1 GFLOP per image


def test_peaks_are_found_by_device_kind():
  assert accelerator.peak_tflops('NVIDIA H100 80GB HBM3', 'bfloat16') == 989.0
  assert accelerator.peak_tflops('TPU v5 lite', 'float32') == 197.0
  assert accelerator.peak_tflops('cpu', 'bfloat16') is None


def test_smoke_run_on_the_cpu(tmp_path):
  out = tmp_path / 'bench.json'
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  result = subprocess.run([sys.executable, 'bench/accelerator.py', '--smoke',
                           f'--output={out}'], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads(out.read_text())['rows']
  assert [r['conv_impl'] for r in rows] == ['grouped', 'split']
  for row in rows:
    assert 'error' not in row, row
    assert row['train_images_per_s'] > 0 and row['eval_images_per_s'] > 0
    assert row['train_ms_per_step'] == pytest.approx(1e3 * row['batch'] /
                                                     row['train_images_per_s'])
  assert '| bfloat16 | grouped | 8 |' in result.stdout
