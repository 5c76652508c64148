"""--mode=compile: does a config fit the slice it is meant for? Compiled ahead of time, no data.

  python main.py --config=configs/alexnet.py --mode=compile --topology=v5e:2x4
  python main.py --config=configs/alexnet.py --mode=compile          # the local devices

With `--topology` the real XLA:TPU compiler compiles the config's train step and eval step for
that TPU slice on this machine (no TPU needed: the compile-only TPU library of
`pip install 'alexnet-jax[tpu]'`), the model taking the TPU's kernels (`model.platform='tpu'`);
without it, for the devices JAX sees here. It prints, per chip, what the compiler says each step
needs: arguments (parameters, optimizer state, the batch), temporaries, their total against the
chip's memory, FLOPs per step and per image, and the compile time. A config that does not fit
stops with one line saying by how much and what to change.

The compiler's numbers are per chip: the compiled module is one device's share of the SPMD
program. Its FLOP count is XLA's own (every operation, not only the matmuls).
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp

from alexnet_jax.train import steps as steps_lib
from alexnet_jax.train.setup import TrainingError

# Memory per chip (GiB), by the device kind JAX reports.
HBM_GIB = {'TPU v4': 32, 'TPU v5 lite': 16, 'TPU v5': 95, 'TPU v6 lite': 32}
TPU_EXTRA = "pip install 'alexnet-jax[tpu]'"


class CompileError(TrainingError):
  """A topology that cannot be had, or a config that does not fit."""


@dataclasses.dataclass(frozen=True)
class StepCost:
  name: str
  images: int              # the global batch the step takes
  argument_bytes: int
  temp_bytes: int
  output_bytes: int
  alias_bytes: int
  flops: float
  compile_s: float

  @property
  def total_bytes(self) -> int:
    """What the step holds at its peak: its arguments, temporaries, and outputs that do not
    reuse an argument's buffer (the train step's donated state does)."""
    return self.argument_bytes + self.temp_bytes + self.output_bytes - self.alias_bytes


# Chips with two TensorCores that JAX runs as one device each ("megacore"). The compile-only
# library's default for v4 makes every core a device (8 for v4:2x2x1), which would halve the
# per-chip figures and compare them with the whole chip's memory.
MEGACORE = ('v4', 'v5p')


def topology_devices(topology: str) -> list:
  """The compile-only devices of a TPU slice such as 'v5e:2x4' (CompileError if unavailable)."""
  # What libtpu asks of the TPU VM it is loaded on; here there is none. Without these it prints
  # start-up warnings (and an error) about its accelerator type, host bounds and worker
  # hostnames. They describe only this process's host: the slice's own hosts and chips come
  # from `topology`, and the compiled steps are the same with or without them.
  os.environ.setdefault('TPU_SKIP_MDS_QUERY', '1')  # no metadata server off a TPU VM
  os.environ.setdefault('TPU_HOST_BOUNDS', '1,1,1')
  os.environ.setdefault('TPU_WORKER_HOSTNAMES', 'localhost')
  from jax.experimental import topologies
  options = {'chip_config_name': 'megacore'} if topology.split(':')[0] in MEGACORE else {}
  try:
    return list(topologies.get_topology_desc(topology, 'tpu', **options).devices)
  except Exception as e:  # pylint: disable=broad-except  (no library, or an unknown slice)
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise CompileError(f'--topology={topology}: no compile-only TPU devices ({first[:160]}). '
                       f'Install the TPU compiler with {TPU_EXTRA}, and name a slice like '
                       "v5e:2x2, v5e:2x4, v4:2x2x1, v5p:2x2x1 or v6e:2x2.") from None


def _cost(name: str, images: int, jitted, args) -> StepCost:
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return StepCost(name, images, int(memory.argument_size_in_bytes), int(memory.temp_size_in_bytes),
                  int(memory.output_size_in_bytes), int(memory.alias_size_in_bytes),
                  float((cost or {}).get('flops', 0.0)), seconds)


def compile_steps(config, devices) -> tuple[steps_lib.Steps, list[StepCost]]:
  """The train step and the eval step (centre crop, the training batch) of `config`, compiled
  for `devices` without running anything."""
  steps = steps_lib.build(config, devices=devices)
  batch = config.batch_size
  state = steps.abstract_state
  train_args = (state, steps.batch_spec(batch), jax.ShapeDtypeStruct((), jnp.float32),
                jax.ShapeDtypeStruct((), jnp.int32))
  eval_batch = config.eval.batch_size or batch
  evals = steps.eval_batch_spec(eval_batch, 1)
  eval_args = (state['params'], evals['image'], evals['label'], evals['mask'])
  return steps, [_cost('train step', batch, steps.train_step, train_args),
                 _cost('eval step', eval_batch, steps.eval_step, eval_args)]


def capacity_bytes(device) -> int | None:
  """The device's memory: the table for TPUs, the runtime's limit for GPUs, None for CPUs."""
  for kind in sorted(HBM_GIB, key=len, reverse=True):
    if kind in device.device_kind:
      return HBM_GIB[kind] * 2**30
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  (compile-only and CPU devices have none)
    return None
  return int(stats['bytes_limit']) if stats and stats.get('bytes_limit') else None


def _gib(n: float) -> str:
  return f'{n / 2**30:,.2f} GiB'


def _size(n: float) -> str:
  """GiB, or MiB below one GiB (a small net's buffers would all read 0.00 GiB)."""
  return _gib(n) if n >= 2**30 else f'{n / 2**20:,.1f} MiB'


def table(config, devices, costs: list[StepCost], capacity: int | None) -> str:
  chips = len(devices)
  lines = [f'{config.model.variant} net, batch {config.batch_size}, {config.model.dtype}, '
           f'on {chips} x {devices[0].device_kind}; per chip:',
           '| step | arguments | temporaries | total | of memory | GFLOP per step | '
           'GFLOP per image (all chips) | compile s |', '|---|---:|---:|---:|---:|---:|---:|---:|']
  for c in costs:
    share = ('-' if capacity is None
             else f'{100 * c.total_bytes / capacity:.0f}% of {_gib(capacity)}')
    lines.append(f'| {c.name} | {_size(c.argument_bytes)} | {_size(c.temp_bytes)} | '
                 f'{_size(c.total_bytes)} | {share} | {c.flops / 1e9:,.2f} | '
                 f'{c.flops * chips / c.images / 1e9:,.2f} | {c.compile_s:.1f} |')
  return '\n'.join(lines)


def check_fits(config, costs: list[StepCost], capacity: int | None,
               model_devices: int | None = None) -> None:
  """CompileError, in one line, when a step needs more than the chip has. `model_devices`: the
  mesh's model size as built (config.mesh.model=0 picks it), else config.mesh.model."""
  if capacity is None:
    return
  worst = max(costs, key=lambda c: c.total_bytes)
  if worst.total_bytes <= capacity:
    return
  over = worst.total_bytes - capacity
  model = config.mesh.model if model_devices is None else model_devices
  split = '' if model == 2 or config.model.columns != 2 else (
      ', or --config.mesh.model=2 (a column per chip)')
  raise CompileError(
      f'Does not fit: the {worst.name} needs {_gib(worst.total_bytes)} per chip, '
      f'{_gib(over)} more than its {_gib(capacity)}: lower --config.batch_size (now '
      f'{config.batch_size}){split}.')


def run(config, topology: str | None = None, log=print) -> list[StepCost]:
  """--mode=compile: compiles, prints the table, and stops (CompileError) if it does not fit."""
  if topology:
    devices = topology_devices(topology)
    config = config.copy_and_resolve_references()
    config.model.platform = 'tpu'
  else:
    devices = jax.devices()
  steps, costs = compile_steps(config, devices)
  used = list(steps.mesh.devices.flat)
  capacity = capacity_bytes(used[0])
  log(table(config, used, costs, capacity))
  check_fits(config, costs, capacity, steps.mesh.shape['model'])
  return costs
