"""Train-step time with both columns on one device (mesh 1x1) vs one column per device (1x2).

  python bench/mesh_overhead.py                      # the paper net, batch 32, 224 px
  python bench/mesh_overhead.py --width=0.25 --input_size=112 --batch=64

Both meshes run in the same process on two simulated CPU devices (set below, before JAX
starts), same parameters, same batch, same train step (loss, gradients, SGD with momentum);
the order alternates so that neither gets a warmer machine. Prints the median step time of each
and the ratio: the price of the split, i.e. the cross-column exchanges and the loss of the
single-device fused path, against the gain of two devices working at once. On a CPU the two
"devices" share the same cores, so the ratio says little about two real accelerators.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from alexnet_jax.model import alexnet as model_lib  # noqa: E402
from alexnet_jax import parallel  # noqa: E402
from alexnet_jax.model import summary  # noqa: E402
from configs.alexnet import get_config  # noqa: E402


def build_step(graphdef, mesh, cfg, tx):
  loss_fn = parallel.make_loss_fn(graphdef, mesh, cfg)

  def step(params, opt_state, batch, key):
    loss, grads = jax.value_and_grad(
        lambda p: loss_fn(p, batch, key, train=True)[0])(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--width', type=float, default=1.0)
  parser.add_argument('--input_size', type=int, default=224)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--steps', type=int, default=5, help='timed steps per mesh and round')
  parser.add_argument('--rounds', type=int, default=2)
  args = parser.parse_args()

  cfg = get_config().model
  cfg.width, cfg.input_size = args.width, args.input_size
  graphdef, params, _ = nnx.split(model_lib.create_model(cfg), nnx.Param, ...)
  count = sum(x.size for x in jax.tree.leaves(params))
  # Host copies: each mesh gets its own device arrays (the step donates them).
  params = jax.tree.map(np.asarray, params)
  tx = optax.sgd(0.01, momentum=0.9)
  rng = np.random.default_rng(0)
  batch = {'image': rng.normal(size=(args.batch, cfg.input_size, cfg.input_size, 3)).astype(
      np.float32), 'label': rng.integers(0, cfg.num_classes, args.batch).astype(np.int32)}
  print(f'jax {jax.__version__}, {jax.device_count()} {jax.default_backend()} devices; '
        f'width {cfg.width}, input {cfg.input_size}, batch {args.batch}, '
        f'{count:,} parameters')
  sent = sum(e.bytes_per_step for e in summary.column_exchanges(cfg, args.batch))
  print(f'exchanged per device per step on 1x2: {sent / 2**20:.2f} MiB (summary)')

  runs = {}
  for shape in [(1, 1), (1, 2)]:
    mesh = parallel.make_mesh(ml_collections.ConfigDict(
        {'data': shape[0], 'model': shape[1]}), cfg)
    step = build_step(graphdef, mesh, cfg, tx)
    state = (parallel.shard_params(mesh, params),
             parallel.shard_params(mesh, tx.init(params)))
    data = parallel.global_batch(mesh, batch)
    start = time.perf_counter()
    *state, loss = step(*state, data, jax.random.key(0))
    loss.block_until_ready()
    print(f'mesh {shape[0]}x{shape[1]}: compile + first step {time.perf_counter() - start:.1f} s, '
          f'loss {float(loss):.4f}')
    runs[shape] = [step, state, data, []]

  for _ in range(args.rounds):
    for shape, run in runs.items():
      step, state, data, times = run
      for i in range(args.steps):
        start = time.perf_counter()
        *state, loss = step(*state, data, jax.random.key(i))
        loss.block_until_ready()
        times.append(time.perf_counter() - start)
      run[1] = state

  medians = {shape: statistics.median(run[3]) for shape, run in runs.items()}
  for shape, median in medians.items():
    print(f'mesh {shape[0]}x{shape[1]} (data x model): median step {median * 1000:.0f} ms over '
          f'{len(runs[shape][3])} steps, {args.batch / median:.1f} img/s')
  print(f'ratio 1x2 / 1x1: {medians[(1, 2)] / medians[(1, 1)]:.2f}')


if __name__ == '__main__':
  main()
