"""Train-step time with both columns on one device (mesh 1x1) vs one column per device (1x2).

  python bench/mesh_overhead.py                      # the paper net, batch 32, 224 px
  python bench/mesh_overhead.py --width=0.25 --input_size=112 --batch=64

Both meshes run in the same process on two simulated CPU devices (set below, before JAX
starts), same parameters, same batch, the training loop's own step (`steps.build`: the float
work on the uint8 crops, loss, gradients, the paper's optimizer; a stand-in input transform, no
data needed); the order alternates so that neither gets a warmer machine. Prints the median step
time of each and the ratio: the price of the split, i.e. the cross-column exchanges and the loss
of the single-device fused path, against the gain of two devices working at once. On a CPU the
two "devices" share the same cores, so the ratio says little about two real accelerators.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from alexnet_jax import parallel  # noqa: E402
from alexnet_jax.model import summary  # noqa: E402
from alexnet_jax.train import steps as steps_lib  # noqa: E402
from configs.alexnet import get_config  # noqa: E402

LEARNING_RATE = 0.01


def _config(args, model: int):
  config = get_config()
  config.model.width, config.model.input_size = args.width, args.input_size
  config.batch_size = args.batch
  config.mesh.data, config.mesh.model = 1, model
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--width', type=float, default=1.0)
  parser.add_argument('--input_size', type=int, default=224)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--steps', type=int, default=5, help='timed steps per mesh and round')
  parser.add_argument('--rounds', type=int, default=2)
  args = parser.parse_args()

  cfg = _config(args, 1).model
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (args.batch, cfg.input_size, cfg.input_size, 3),
                                 dtype=np.uint8),
           'label': rng.integers(0, cfg.num_classes, args.batch).astype(np.int32),
           'weight': np.ones(args.batch, np.float32)}
  runs = {}
  for model in (1, 2):
    steps = steps_lib.build(_config(args, model), devices=jax.devices()[:model])
    state = steps.init_state()  # the same parameters on both meshes (config.seed)
    if not runs:
      count = sum(x.size for x in jax.tree.leaves(state['params']))
      print(f'jax {jax.__version__}, {jax.device_count()} {jax.default_backend()} devices; '
            f'width {cfg.width}, input {cfg.input_size}, batch {args.batch}, '
            f'{count:,} parameters')
      sent = sum(e.bytes_per_step for e in summary.column_exchanges(cfg, args.batch))
      print(f'exchanged per device per step on 1x2: {sent / 2**20:.2f} MiB (summary)')
    data = parallel.global_batch(steps.mesh, batch)
    start = time.perf_counter()
    state, metrics = steps.train_step(state, data, jnp.float32(LEARNING_RATE), jnp.int32(0))
    loss = float(metrics['loss'])
    print(f'mesh 1x{model}: compile + first step {time.perf_counter() - start:.1f} s, '
          f'loss {loss:.4f}')
    runs[model] = {'step': steps.train_step, 'state': state, 'data': data, 'times': []}

  for round_index in range(args.rounds):
    for model in ((1, 2) if round_index % 2 == 0 else (2, 1)):
      run = runs[model]
      for i in range(args.steps):
        start = time.perf_counter()
        run['state'], metrics = run['step'](run['state'], run['data'],
                                            jnp.float32(LEARNING_RATE), jnp.int32(i + 1))
        jax.block_until_ready(metrics)
        run['times'].append(time.perf_counter() - start)

  medians = {model: statistics.median(run['times']) for model, run in runs.items()}
  for model, median in medians.items():
    print(f'mesh 1x{model} (data x model): median step {median * 1000:.0f} ms over '
          f'{len(runs[model]["times"])} steps, {args.batch / median:.1f} img/s')
  print(f'ratio 1x2 / 1x1: {medians[2] / medians[1]:.2f}')


if __name__ == '__main__':
  main()
