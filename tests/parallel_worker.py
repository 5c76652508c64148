"""One of two processes of tests/test_parallel.py's multi-process check (2 CPU devices each).

  python tests/parallel_worker.py PROCESS_ID PORT

Joins the other process through a localhost coordinator, builds the (2, 2) mesh across both
(data over processes, the column pair inside each), feeds only this process's shard of the
batch, and prints the loss and the gradient norm of the eighth-width test net as JSON.
"""

import json
import os
import sys

os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from alexnet_jax import parallel  # noqa: E402


def main(process_id: int, port: int) -> None:
  assert parallel.initialize_distributed(f'localhost:{port}', 2, process_id)
  import jax.numpy as jnp
  import ml_collections
  import numpy as np
  from flax import nnx

  from alexnet_jax.model import alexnet as model_lib
  from configs.alexnet import get_config

  cfg = get_config('quickstart').model
  cfg.width, cfg.input_size, cfg.num_classes, cfg.dropout = 0.125, 112, 10, 0.5
  graphdef, params, _ = nnx.split(model_lib.create_model(cfg, seed=0), nnx.Param, ...)
  mesh = parallel.make_mesh(ml_collections.ConfigDict({'data': -1, 'model': 2}), cfg)
  shard = parallel.data_shard(mesh, 8)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(8, 112, 112, 3)).astype(np.float32)
  labels = rng.integers(0, 10, 8).astype(np.int32)
  rows = slice(shard.index * shard.batch_size, (shard.index + 1) * shard.batch_size)
  batch = parallel.global_batch(mesh, {'image': images[rows], 'label': labels[rows]})
  loss_fn = parallel.make_loss_fn(graphdef, mesh, cfg)

  @jax.jit
  def step(params, batch):
    loss, grads = jax.value_and_grad(
        lambda p: loss_fn(p, batch, jax.random.key(7), train=True)[0])(params)
    return loss, jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))

  loss, grad_norm = step(parallel.shard_params(mesh, params), batch)
  print(json.dumps({'process': jax.process_index(), 'devices': jax.device_count(),
                    'shard': [shard.index, shard.count, shard.batch_size],
                    'main': parallel.is_main_process(), 'loss': float(loss),
                    'grad_norm': float(grad_norm)}), flush=True)
  jax.distributed.shutdown()


if __name__ == '__main__':
  main(int(sys.argv[1]), int(sys.argv[2]))
