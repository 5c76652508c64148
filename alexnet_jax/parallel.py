"""Two columns on two devices: the device mesh, shardings, and the sharded forward/loss.

The mesh has axes ('data', 'model'). With model=2 each device of a 'model' pair holds one column
of the net (every parameter's leading column axis is split over 'model'), as the paper ran its
columns on two GPUs; `jax.shard_map` runs the model on the local column and the model all-gathers
activations over 'model' only at the inputs of conv3, fc6, fc7, fc8 and at the logits. With
model=1 both columns (or the single-column net) live on every device and parameters are
replicated. In both cases the batch is split over 'data'; gradients come out averaged over it.

Same parameters + same batch give the same logits, loss and gradients on every mesh (dropout
masks too: they are drawn per column and per global example), so checkpoints move between meshes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from alexnet_jax import config_schema

AXES = ('data', 'model')


class LayoutError(ValueError):
  """A mesh / batch / process layout that cannot work; the message says what to change."""


# ------------------------------------------------------------------------------------ mesh
def resolve_layout(mesh_config, model_config, device_count: int) -> tuple[int, int]:
  """(data, model) sizes for `config.mesh` on `device_count` devices, or a LayoutError.

  model: 0 = the model's columns if the devices allow it (2 columns on an even device count),
  else 1; 1 = every device holds the whole net; 2 = one column per device.
  data: -1 = every remaining device; else that many model replicas (may use fewer devices
  than there are, on one process).
  """
  config_schema.check(mesh_config, 'mesh', error=LayoutError)
  columns = model_config.columns
  model, data = mesh_config.model, mesh_config.data
  if model == 0:
    model = 2 if columns == 2 and device_count >= 2 and device_count % 2 == 0 else 1
  if model == 2 and columns != 2:
    raise LayoutError(
        f'mesh.model=2 splits the two columns over two devices, but model.columns={columns} '
        f'(variant {model_config.variant!r}) has a single column: set mesh.model=1 (or 0).')
  if model > device_count:
    raise LayoutError(
        f'mesh.model={model} needs {model} devices but there is {device_count}: set '
        'mesh.model=1 (both columns on one device) or run on 2+ devices (on CPU, simulate them '
        'with XLA_FLAGS=--xla_force_host_platform_device_count=2).')
  if device_count % model:
    raise LayoutError(f'{device_count} devices do not split into pairs for mesh.model={model}: '
                      'set mesh.model=1 or use an even number of devices.')
  if data == -1:
    data = device_count // model
  if data * model > device_count:
    raise LayoutError(
        f'mesh.data={data} x mesh.model={model} = {data * model} devices, but there are '
        f'{device_count}: set mesh.data={device_count // model} or -1.')
  return data, model


def make_mesh(mesh_config, model_config, devices=None) -> jax.sharding.Mesh:
  """The ('data', 'model') mesh for the config; fails early (LayoutError) on impossible ones."""
  devices = list(jax.devices() if devices is None else devices)
  data, model = resolve_layout(mesh_config, model_config, len(devices))
  used = devices[:data * model]
  if jax.process_count() > 1:
    missing = {d.process_index for d in devices} - {d.process_index for d in used}
    if missing:
      raise LayoutError(
          f'mesh {data}x{model} leaves processes {sorted(missing)} without a device: with '
          'several processes set mesh.data=-1 so the mesh spans every device.')
  # Auto axes: shard_map's in/out specs decide the layout inside; jit outside follows the
  # NamedShardings the arrays carry.
  return jax.make_mesh((data, model), AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2,
                       devices=used)


def model_parallel(mesh) -> bool:
  """True when the columns are split over the mesh's 'model' axis."""
  return mesh.shape['model'] == 2


def check_batch(mesh, global_batch_size: int) -> None:
  """LayoutError unless the global batch splits evenly over the 'data' axis."""
  data = mesh.shape['data']
  if global_batch_size < 1 or global_batch_size % data:
    lower = global_batch_size // data * data
    raise LayoutError(
        f'batch_size={global_batch_size} does not split over {data} data-parallel replicas '
        f'(mesh.data={data}): use a multiple of {data}, e.g. batch_size={max(lower, data)} or '
        f'{lower + data}, or change mesh.data.')


# ------------------------------------------------------------------------------- shardings
def _leaf_spec(mesh, leaf) -> P:
  shape = np.shape(leaf) if not hasattr(leaf, 'shape') else leaf.shape
  if model_parallel(mesh) and len(shape) >= 2 and shape[0] == 2:
    return P('model')
  return P()


def param_sharding(mesh, tree):
  """A NamedSharding per leaf: the leading column axis over 'model' when the columns are split.

  Works for parameters and for optimizer states that mirror them: every leaf of rank >= 2 with
  a leading axis of 2 is a column-stacked leaf (all parameters are: kernels and biases alike);
  scalars (counts, learning rates) and anything else are replicated. With model=1 everything is
  replicated.
  """
  return jax.tree.map(lambda leaf: NamedSharding(mesh, _leaf_spec(mesh, leaf)), tree)


def param_specs(mesh, tree):
  """The PartitionSpecs behind `param_sharding` (shard_map's in_specs)."""
  return jax.tree.map(lambda leaf: _leaf_spec(mesh, leaf), tree)


def batch_sharding(mesh) -> NamedSharding:
  """Examples split over 'data'; each 'model' pair sees the same examples."""
  return NamedSharding(mesh, P('data'))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_params(mesh, tree):
  """`tree` placed on the mesh with `param_sharding` (host arrays or arrays on other meshes)."""
  return jax.device_put(tree, param_sharding(mesh, tree))


def abstract_with_sharding(mesh, tree):
  """ShapeDtypeStructs carrying `param_sharding`: what orbax restores into on this mesh."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree,
      param_sharding(mesh, tree))


# ------------------------------------------------------------------- data across processes
def _process_data_rows(mesh) -> list[int]:
  """Indices along 'data' that this process's devices hold (each process may hold several)."""
  rows = set()
  for index in np.ndindex(mesh.devices.shape):
    if mesh.devices[index].process_index == jax.process_index():
      rows.add(index[0])
  return sorted(rows)


@dataclasses.dataclass(frozen=True)
class DataShard:
  """What this process's input pipeline reads: shard `index` of `count`, `batch_size` examples."""
  index: int
  count: int
  batch_size: int


def data_shard(mesh, global_batch_size: int) -> DataShard:
  """This process's share of every global batch (processes that hold the same rows of the
  'data' axis, e.g. the two halves of a column pair, read the same shard)."""
  check_batch(mesh, global_batch_size)
  rows = _process_data_rows(mesh)
  data = mesh.shape['data']
  if rows != list(range(rows[0], rows[0] + len(rows))) or data % len(rows):
    raise LayoutError(f'this process holds data rows {rows} of {data}: not one contiguous equal '
                      'block; give every process the same number of devices.')
  per_row = global_batch_size // data
  return DataShard(index=rows[0] // len(rows), count=data // len(rows),
                   batch_size=per_row * len(rows))


def global_batch(mesh, local_batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
  """Process-local numpy arrays (this process's `data_shard`) -> global arrays split over 'data'.

  On one process the local batch is the global batch. Works the same on several hosts: each
  process passes only the examples its own devices need.
  """
  sharding = batch_sharding(mesh)
  rows = _process_data_rows(mesh)
  data = mesh.shape['data']
  out = {}
  for name, value in local_batch.items():
    value = np.asarray(value)
    if value.shape[0] % len(rows):
      raise LayoutError(f'local batch {name!r} has {value.shape[0]} examples, not a multiple of '
                        f'the {len(rows)} data-parallel replica(s) on this process.')
    global_shape = (value.shape[0] // len(rows) * data,) + value.shape[1:]
    out[name] = jax.make_array_from_process_local_data(sharding, value, global_shape)
  return out


# --------------------------------------------------------------------------- sharded model
def _with_mesh_checks(mesh, model_config):
  if model_parallel(mesh) and model_config.columns != 2:
    raise LayoutError('mesh.model=2 needs the two-column net (model.columns=2); set '
                      'mesh.model=1.')


def _data_split(mesh) -> bool:
  """Whether the batch is split over 'data' inside the model's shard_map.

  With one data-parallel replica it is not: the batch enters whole (replicated over a 'data'
  axis of size 1), so nothing varies over 'data' and the gradients need no sum over it, an
  all-reduce XLA would still run, as a copy of every gradient (25 ms of the paper net's step on
  a CPU).
  """
  return mesh.shape['data'] > 1


def _forward(graphdef, params, images, *, train, dropout_key, column_axis, data_split=True):
  # Mark the parameters as varying over 'data' once, up front: the transpose of this cast is the
  # gradient's sum over 'data', one all-reduce per parameter (rather than one per place the
  # model slices a parameter, e.g. per column of an own-column conv on one device).
  if data_split:
    params = jax.tree.map(lambda x: jax.lax.pcast(x, 'data', to='varying'), params)
  model = nnx.merge(graphdef, params)
  return model(images, train=train, dropout_key=dropout_key, column_axis=column_axis,
               data_axis='data' if data_split else None)


def make_logits_fn(graphdef, mesh, model_config) -> Callable[[Any, jax.Array], jax.Array]:
  """(params, images) -> logits [global batch, classes], for evaluation (test-time dropout).

  `images` split over 'data' (their leading dimension must divide by it); the logits come back
  split the same way and identical on both devices of a column pair.
  """
  _with_mesh_checks(mesh, model_config)
  column_axis = 'model' if model_parallel(mesh) else None

  def logits_fn(params, images):
    def local(params, images):
      return _forward(graphdef, params, images, train=False, dropout_key=None,
                      column_axis=column_axis)

    return jax.shard_map(local, mesh=mesh, in_specs=(param_specs(mesh, params), P('data')),
                         out_specs=P('data'))(params, images)

  return logits_fn


def _top_k_correct(logits, labels, k):
  """1 where the label's logit is beaten by fewer than k others (ties count against)."""
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
  return (jnp.sum(logits > label_logit, axis=-1) < k).astype(jnp.float32)


def make_loss_fn(graphdef, mesh, model_config):
  """(params, batch, dropout_key, train) -> (loss, aux), the forward + softmax cross-entropy.

  batch: {'image': [B, H, W, 3], 'label': [B] int, optionally 'weight': [B] (0 for padding
  examples, e.g. the last partial eval batch)}, split over 'data'. The loss is the (weighted)
  mean over the GLOBAL batch, so `jax.grad` of it (taken outside, as usual) gives gradients
  averaged over 'data' and sharded like the parameters. aux: global sums 'loss_sum', 'count'
  (examples, or sum of weights), 'top1', 'top5' (correct predictions), for exact metrics.
  `train` is a Python bool: dropout masks from `dropout_key` (the same on every mesh) or
  test-time dropout.
  """
  _with_mesh_checks(mesh, model_config)
  column_axis = 'model' if model_parallel(mesh) else None
  split = _data_split(mesh)

  def loss_fn(params, batch, dropout_key=None, train=True):
    images, labels = batch['image'], batch['label']
    weights = batch.get('weight')
    if weights is None:
      weights = jnp.ones(labels.shape, jnp.float32)
    if dropout_key is None:
      dropout_key = jax.random.key(0)  # unused unless train with dropout
      if train and model_config.dropout > 0:
        raise ValueError('Training with dropout needs a dropout_key.')

    def local(params, images, labels, weights, dropout_key):
      logits = _forward(graphdef, params, images, train=train, dropout_key=dropout_key,
                        column_axis=column_axis, data_split=split)
      log_probs = jax.nn.log_softmax(logits)
      nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
      weights = weights.astype(jnp.float32)
      sums = jnp.stack([jnp.sum(weights * nll), jnp.sum(weights),
                        jnp.sum(weights * _top_k_correct(logits, labels, 1)),
                        jnp.sum(weights * _top_k_correct(logits, labels, 5))])
      # One all-reduce over 'data' for the loss and the metric counts together.
      return jax.lax.psum(sums, 'data') if split else sums

    batch_spec = P('data') if split else P()
    sums = jax.shard_map(
        local, mesh=mesh,
        in_specs=(param_specs(mesh, params), batch_spec, batch_spec, batch_spec, P()),
        out_specs=P())(params, images, labels, weights, dropout_key)
    loss_sum, count, top1, top5 = sums[0], sums[1], sums[2], sums[3]
    loss = loss_sum / jnp.maximum(jax.lax.stop_gradient(count), 1.0)
    aux = {'loss_sum': loss_sum, 'count': count, 'top1': top1, 'top5': top5}
    return loss, aux

  return loss_fn


# ------------------------------------------------------------------------- several hosts
@dataclasses.dataclass(frozen=True)
class DistributedArgs:
  """How to call jax.distributed.initialize: explicit arguments, or JAX's own detection."""
  source: str                          # 'flags', 'env', 'slurm', 'tpu'
  kwargs: dict


def distributed_args(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, *, tpu: bool = False,
                     environ: Mapping[str, str] | None = None) -> DistributedArgs | None:
  """Decides whether this is one of several processes, and how to join the others.

  In order: explicit arguments (all three, e.g. from command-line flags); the environment
  variables JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID; SLURM (srun with more
  than one task: SLURM_NTASKS > 1, JAX reads the rest); a multi-host TPU VM (`tpu=True`, or
  TPU_WORKER_HOSTNAMES / TPU_PROCESS_ADDRESSES listing several hosts; JAX asks the TPU
  metadata). None when this process is alone: nothing to initialize.
  """
  env = os.environ if environ is None else environ
  given = {'coordinator_address': coordinator_address, 'num_processes': num_processes,
           'process_id': process_id}
  source = 'flags'
  if all(v is None for v in given.values()):
    names = {'coordinator_address': 'JAX_COORDINATOR_ADDRESS',
             'num_processes': 'JAX_NUM_PROCESSES', 'process_id': 'JAX_PROCESS_ID'}
    given = {k: env.get(v) for k, v in names.items()}
    source = 'env'
  if any(v is not None for v in given.values()):
    missing = [k for k, v in given.items() if v is None]
    if missing:
      raise LayoutError(f'several processes need coordinator_address, num_processes and '
                        f'process_id together ({source}); missing: {", ".join(missing)}.')
    try:
      count, index = int(given['num_processes']), int(given['process_id'])
    except ValueError as e:
      raise LayoutError(f'num_processes and process_id must be integers ({source}): {e}') from e
    if count < 1 or not 0 <= index < count:
      raise LayoutError(f'process_id={index} with num_processes={count}: need '
                        f'0 <= process_id < num_processes.')
    if count == 1:
      return None
    return DistributedArgs(source, {'coordinator_address': str(given['coordinator_address']),
                                    'num_processes': count, 'process_id': index})
  if 'SLURM_JOB_ID' in env and int(env.get('SLURM_NTASKS', '1')) > 1:
    needed = ('SLURM_STEP_NODELIST', 'SLURM_PROCID', 'SLURM_LOCALID')
    missing = [v for v in needed if v not in env]
    if missing:
      raise LayoutError(f'SLURM_NTASKS={env["SLURM_NTASKS"]} but {", ".join(missing)} unset: '
                        'start each process with srun (one task per GPU).')
    return DistributedArgs('slurm', {'cluster_detection_method': 'slurm'})
  hosts = env.get('TPU_PROCESS_ADDRESSES') or env.get('TPU_WORKER_HOSTNAMES') or ''
  if tpu or len([h for h in hosts.split(',') if h.strip()]) > 1:
    return DistributedArgs('tpu', {})
  return None


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None, *,
                           tpu: bool = False) -> bool:
  """jax.distributed.initialize when this is one of several processes; returns whether it did.

  Call before anything touches the devices. A no-op for a single process (see
  `distributed_args` for how that is decided).
  """
  args = distributed_args(coordinator_address, num_processes, process_id, tpu=tpu)
  if args is None:
    return False
  jax.distributed.initialize(**args.kwargs)
  return True


def is_main_process() -> bool:
  """Only process 0 writes logs, metrics and run records."""
  return jax.process_index() == 0


__all__ = [
    'AXES', 'DataShard', 'DistributedArgs', 'LayoutError', 'abstract_with_sharding',
    'batch_sharding', 'check_batch', 'data_shard', 'distributed_args', 'global_batch',
    'initialize_distributed', 'is_main_process', 'make_logits_fn', 'make_loss_fn', 'make_mesh',
    'model_parallel', 'param_sharding', 'param_specs', 'replicated', 'resolve_layout',
    'shard_params',
]
