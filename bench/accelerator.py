"""The paper net's train and eval steps on one accelerator: images/s, ms per step, model-FLOP
utilisation against the chip's peak, peak memory; bf16 and fp32, grouped and split convolutions,
batch 128 to 1024. Prints a markdown table and writes JSON.

  python bench/accelerator.py                      # on a GPU (or TPU): every row, < 8 minutes
  python bench/accelerator.py --smoke              # on a CPU, in seconds: a tiny net, 1 row each
  python bench/accelerator.py --xla_option=--xla_gpu_autotune_level=0   # adds rows with a flag

It needs jax, flax, optax, numpy and ml_collections only (no TensorFlow, no data): the batches
are synthetic uint8 crops, turned into the net's input inside the step exactly as in training
(alexnet_jax/train/steps.py builds the same steps the trainer runs). Where ml_collections is
not installed, bring its wheel (pure Python): `pip download ml_collections --no-deps -d wheels`
here, `pip install --no-index wheels/*.whl` there.

Each row compiles the train step and the eval step (centre crop) for one setting, runs
`--warmup` steps, then times `--steps` steps (the state stays on the device; the timer stops on
the last result). Model FLOPs count the multiply-adds of every conv and fc layer (x2), forward
and the two backward products (none for conv1's input); the peak is the chip's dense bf16 rate
for bf16 rows and its TF32 (or fp32 where it has none) rate for fp32 rows (PEAK_TFLOPS). Peak
memory: the device's own `peak_bytes_in_use` where it reports one, else the compiler's
arguments + temporaries. `--xla_option` rows run in a child process with the flag added to
XLA_FLAGS (XLA reads it once, at start).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# Dense peak per chip, TFLOP/s: (bf16, fp32 as XLA runs it: TF32 where the chip has it).
PEAK_TFLOPS = {'H100': (989.0, 494.0), 'H200': (989.0, 494.0), 'A100': (312.0, 156.0),
               'V100': (125.0, 15.7), 'L4': (121.0, 60.0), 'TPU v4': (275.0, 275.0),
               'TPU v5 lite': (197.0, 197.0), 'TPU v5': (459.0, 459.0),
               'TPU v6 lite': (918.0, 918.0)}
BATCHES = (128, 256, 512, 1024)
DTYPES = ('bfloat16', 'float32')
CONV_IMPLS = ('grouped', 'split')
SMOKE_OVERRIDES = {'model.width': 0.125, 'model.input_size': 67, 'data.resize_size': 72}


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  """The chip's dense peak for `dtype` rows, or None for a chip not in PEAK_TFLOPS."""
  for name in sorted(PEAK_TFLOPS, key=len, reverse=True):  # 'TPU v5 lite' before 'TPU v5'
    if name in device_kind:
      return PEAK_TFLOPS[name][0 if dtype == 'bfloat16' else 1]
  return None


def model_flops_per_image(model_config) -> float:
  """Train-step model FLOPs per image: 2 x multiply-adds of each conv and fc layer, forward
  and the two backward products (conv1's input gradient is not computed)."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from alexnet_jax.model import alexnet as model_lib
  captured = {}
  size = model_config.input_size
  jax.eval_shape(lambda x: model_lib.create_model(model_config)(x, capture=captured),
                 jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  net = nnx.eval_shape(lambda: model_lib.create_model(model_config))
  total = 0.0
  for layer in (*net.conv_layers, *net.dense_layers):
    kernel = getattr(net, layer.name).kernel.shape
    macs = captured[layer.name].size * kernel[-2] * (kernel[1] * kernel[2] if len(kernel) == 5
                                                     else 1)
    total += 2 * macs * (2 if layer.name == 'conv1' else 3)
  return total


def _config(dtype: str, conv_impl: str, batch: int, smoke: bool):
  from configs.alexnet import get_config
  config = get_config()
  config.batch_size = batch
  config.model.dtype = dtype
  config.model.conv_impl = conv_impl
  config.mesh.model = 1
  config.mesh.data = 1
  for key, value in (SMOKE_OVERRIDES.items() if smoke else ()):
    group, field = key.split('.')
    config[group][field] = value
  return config


def _synthetic_batch(config, batch: int, views: int = 0) -> dict:
  import numpy as np
  rng = np.random.default_rng(0)
  size = config.model.input_size
  shape = (batch, views, size, size, 3) if views else (batch, size, size, 3)
  out = {'image': rng.integers(0, 256, shape, dtype=np.uint8),
         'label': rng.integers(0, config.model.num_classes, batch).astype(np.int32)}
  out['weight' if not views else 'mask'] = (np.ones(batch, np.float32) if not views
                                            else np.ones(batch, bool))
  return out


def _memory(device, compiled) -> tuple[int, str]:
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and stats.get('peak_bytes_in_use'):
    return int(stats['peak_bytes_in_use']), 'device peak'
  analysis = compiled.memory_analysis()
  return int(analysis.argument_size_in_bytes + analysis.temp_size_in_bytes), 'compiler'


def _time(run, warmup: int, steps: int) -> float:
  """Seconds per call of `run` (which returns something to wait on), after `warmup` calls."""
  import jax
  for _ in range(warmup):
    jax.block_until_ready(run())
  start = time.perf_counter()
  out = None
  for _ in range(steps):
    out = run()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def measure(dtype: str, conv_impl: str, batch: int, args) -> dict:
  """One row: the train and eval steps of one setting, compiled and timed."""
  import jax
  import jax.numpy as jnp
  from alexnet_jax import parallel
  from alexnet_jax.train import steps as steps_lib
  config = _config(dtype, conv_impl, batch, args.smoke)
  device = jax.devices()[0]
  steps = steps_lib.build(config, devices=[device])
  state = steps.init_state()
  data = parallel.global_batch(steps.mesh, _synthetic_batch(config, batch))
  evals = parallel.global_batch(steps.mesh, _synthetic_batch(config, batch, views=1))
  start = time.perf_counter()
  lr, index = jnp.float32(0.01), jnp.int32(0)
  compiled = steps.train_step.lower(state, data, lr, index).compile()
  eval_args = (state['params'], evals['image'], evals['label'], evals['mask'])
  steps.eval_step.lower(*eval_args).compile()
  compile_s = time.perf_counter() - start
  box = {'state': state}

  def train():
    box['state'], metrics = steps.train_step(box['state'], data, lr, index)
    return metrics['loss']

  train_s = _time(train, args.warmup, args.steps)
  eval_s = _time(lambda: steps.eval_step(box['state']['params'], *eval_args[1:]), args.warmup,
                 args.steps)
  memory, source = _memory(device, compiled)
  flops = model_flops_per_image(config.model)
  peak = peak_tflops(device.device_kind, dtype)
  rate = batch / train_s
  return {'device': device.device_kind, 'dtype': dtype, 'conv_impl': conv_impl, 'batch': batch,
          'xla_option': os.environ.get('ALEXNET_BENCH_OPTION', ''),
          'train_images_per_s': rate, 'train_ms_per_step': 1e3 * train_s,
          'eval_images_per_s': batch / eval_s, 'eval_ms_per_step': 1e3 * eval_s,
          'model_gflop_per_image': flops / 1e9,
          'mfu': None if peak is None else rate * flops / (peak * 1e12),
          'peak_memory_gib': memory / 2**30, 'memory_source': source, 'compile_s': compile_s}


def markdown(rows: list[dict]) -> str:
  lines = ['| dtype | conv | batch | XLA option | train img/s | ms/step | MFU | eval img/s | '
           'peak memory GiB | compile s |', '|---|---|---:|---|---:|---:|---:|---:|---:|---:|']
  for r in rows:
    if 'error' in r:
      lines.append(f"| {r['dtype']} | {r['conv_impl']} | {r['batch']} | {r['xla_option']} | "
                   f"{r['error']} | | | | | |")
      continue
    mfu = '-' if r['mfu'] is None else f"{100 * r['mfu']:.1f}%"
    lines.append(
        f"| {r['dtype']} | {r['conv_impl']} | {r['batch']} | {r['xla_option'] or '-'} | "
        f"{r['train_images_per_s']:,.0f} | {r['train_ms_per_step']:.2f} | {mfu} | "
        f"{r['eval_images_per_s']:,.0f} | {r['peak_memory_gib']:.2f} "
        f"({r['memory_source']}) | {r['compile_s']:.1f} |")
  return '\n'.join(lines)


def run_rows(args) -> list[dict]:
  """Every setting in turn until the time budget is spent (the rest are reported as skipped)."""
  smoke = args.smoke
  settings = [(d, c, b) for d in (DTYPES[:1] if smoke else DTYPES)
              for c in CONV_IMPLS for b in ((8,) if smoke else BATCHES)]
  deadline = time.monotonic() + args.budget_s
  rows = []
  for dtype, conv_impl, batch in settings:
    base = {'dtype': dtype, 'conv_impl': conv_impl, 'batch': batch,
            'xla_option': os.environ.get('ALEXNET_BENCH_OPTION', '')}
    if time.monotonic() > deadline:
      rows.append(dict(base, error='skipped: time budget spent'))
      continue
    try:
      rows.append(measure(dtype, conv_impl, batch, args))
    except Exception as e:  # pylint: disable=broad-except  (out of memory: a row, not the end)
      rows.append(dict(base, error=f'{type(e).__name__}: {str(e).splitlines()[0][:80]}'))
    print(markdown(rows[-1:]).splitlines()[-1], flush=True)
  return rows


def _option_rows(option: str, args) -> list[dict]:
  """The rows of a child process with `option` added to XLA_FLAGS."""
  env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {option}".strip(),
             ALEXNET_BENCH_OPTION=option)
  out = f'{args.output}.option.json'
  cmd = [sys.executable, __file__, f'--output={out}', f'--steps={args.steps}',
         f'--warmup={args.warmup}', f'--budget_s={args.option_budget_s}'] + (
             ['--smoke'] if args.smoke else [])
  subprocess.run(cmd, env=env, check=True)
  with open(out) as f:
    return json.load(f)['rows']


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--smoke', action='store_true', help='a tiny net on any device, seconds')
  parser.add_argument('--steps', type=int, default=20, help='timed steps per row')
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--budget_s', type=float, default=360.0,
                      help='stop starting new rows after this many seconds')
  parser.add_argument('--xla_option', action='append', default=[],
                      help='an XLA flag whose rows are measured too (child process)')
  parser.add_argument('--option_budget_s', type=float, default=60.0)
  parser.add_argument('--output', default='bench_accelerator.json')
  args = parser.parse_args(argv)
  if args.smoke:
    args.steps, args.warmup = min(args.steps, 2), min(args.warmup, 1)
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import alexnet_jax  # noqa: F401  (XLA:CPU defaults before JAX starts)
  import jax
  print(f'jax {jax.__version__}, {jax.devices()[0].device_kind} x {jax.device_count()}',
        flush=True)
  rows = run_rows(args)
  for option in args.xla_option:
    rows += _option_rows(option, args)
  table = markdown(rows)
  print(table)
  with open(args.output + '.tmp', 'w') as f:
    json.dump({'jax': jax.__version__, 'device': jax.devices()[0].device_kind, 'rows': rows,
               'date': time.strftime('%Y-%m-%d')}, f, indent=2)
  os.replace(args.output + '.tmp', args.output)
  return 0


if __name__ == '__main__':
  sys.exit(main())
