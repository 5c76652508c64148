"""Data is made once, whoever asks: processes started together on a new data dir (as `srun -n 3
python main.py ...` starts them, or three jobs of an array, or three shells) make the mini
ImageNet, its squares and its stats exactly once; the others wait for the data dir's lock, then
find everything made, and every one of them reads the same dataset."""

import json
import os
import subprocess
import sys

from alexnet_jax.data.prepare import data_lock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROCESSES = 3

# What each process runs: the command layer's call before training, on a tiny mini ImageNet
# (6 images per class: 54 train, 6 held out; the quickstart's settings otherwise).
_PREPARE = """
import json, sys
sys.path[:0] = ['.']
from configs import alexnet
from alexnet_jax.data.prepare import prepare
config = alexnet.get_config('quickstart').data
config.data_dir = sys.argv[1]
config.mini.images_per_class = 6
config.resize_size = 72
info = prepare.prepare(config, model_num_classes=10, image_size=67)
print('dataset', json.dumps([info.name, info.num_train, info.num_eval, info.num_classes,
                             info.stats_file]))
"""


def _start(data_dir):
  env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'}
  return subprocess.Popen([sys.executable, '-u', '-c', _PREPARE, str(data_dir)], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_processes_started_together_make_the_data_once(tmp_path):
  data_dir = tmp_path / 'mini'  # new
  procs = []
  try:
    # The test holds the data dir's lock while the processes start, so that each of them finds
    # it held, says so and waits (the event waited for here is that line); releasing it lets
    # all of them go at once.
    with data_lock.held(str(data_dir)):
      for _ in range(PROCESSES):
        procs.append(_start(data_dir))
      for p in procs:
        line = p.stdout.readline()
        assert line == f'waiting for another process making the data in {data_dir}\n', (
            line, '' if line else p.stderr.read()[-3000:])
    outputs = [p.communicate(timeout=600) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  lines = [line for out, _ in outputs for line in out.splitlines()]
  # Made exactly once: the images and their TFDS preparation, the squares, the stats.
  for made in ('mini_imagenet: wrote 60 JPEGs', 'mini_imagenet: prepared',
               'squares train: 60 images', 'stats: 54 images'):
    assert sum(line.startswith(made) for line in lines) == 1, (made, lines)
  # The others found it all made and only checked; every process reads the same dataset.
  datasets = [json.loads(line.split(' ', 1)[1]) for line in lines if line.startswith('dataset ')]
  assert len(datasets) == PROCESSES and all(d == datasets[0] for d in datasets), datasets
  name, num_train, num_eval, num_classes, stats_file = datasets[0]
  assert name.startswith('imagenet2012/') and (num_train, num_eval, num_classes) == (54, 6, 10)
  assert os.path.exists(stats_file)
