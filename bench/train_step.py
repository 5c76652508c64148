"""The training step against the same net in PyTorch: images/s, ratio and matmul share, one run.

  python bench/train_step.py                       # both nets, 3 rounds (~3 min on 2 cores)
  python bench/train_step.py --rounds=1 --steps=1  # a smoke run (~1 min)
  python bench/train_step.py --nets=quickstart --contender=jax@HEAD~1 --contender=jax

Each contender is a persistent worker process that builds its step once and then, on the
parent's word, times `--steps` steps; the parent asks the contenders in turn, round after round,
so that all of them see the same machine. Contenders (`--contender`, repeated; default jax and
torch), written jax[@REV][:KEY=VALUE...][+FLAG...] or torch:

  jax            the project's own step, `steps.build(config).train_step` (the loop's step: loss,
                 gradients, the paper's optimizer) on one device, from this checkout
                 (bench/jax_contender.py)
  @REV           ...from the code of git revision REV (exported to a temporary directory)
  :KEY=VALUE     ...with a config override, e.g. ':model.conv1_impl=conv'
  +FLAG          ...with FLAG appended to XLA_FLAGS, e.g. '+--xla_cpu_use_xnnpack=false'
  torch          the same net in PyTorch (grouped convolutions for the own-column layers,
                 torch's LRN and max-pooling, SGD with momentum 0.9 and weight decay 5e-4;
                 bench/torch_contender.py)

All contenders start from the same parameters (the first jax worker's, passed as a .npz) and
train on the same random batch of uint8 crops (held in memory: no input pipeline), which each
step turns into the net's input (colour noise, mean image, input scale) as the training loop
does (`steps.build` without data: a stand-in mean image and PCA of the same shapes); jax@REV of
code from before that moved into the step gets float inputs instead. Every
round each worker also times a float32 matmul (jnp.dot or torch.mm, 2048x2048x2048); "share" is
the step's model FLOPs per second (forward + the two backward products of every conv and fc
layer, none for conv1's input) over that matmul rate, i.e. how much of the machine's
dense-algebra speed the step uses.
The load average (/proc/loadavg) is printed before and after: compare with PyTorch only on an
idle machine (PyTorch's threads suffer more than XLA's from other processes).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETS = {
    # name: (config argument, batch)
    'paper': (None, 32),
    'quickstart': ('quickstart', 64),
}
DEFAULT_STEPS = {'paper': 3, 'quickstart': 10}
MATMUL_N = 2048


def load() -> str:
  try:
    with open('/proc/loadavg') as f:
      return ' '.join(f.read().split()[:3])
  except OSError:
    return 'unknown'


# ----------------------------------------------------------------------------- parent side
class Worker:
  """A contender's process: one JSON line per request on stdout."""

  def __init__(self, name: str, argv: list[str], env: dict, cwd: str):
    self.name = name
    self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                 cwd=cwd, text=True)
    self.ready = self._read()

  def _read(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      raise SystemExit(f'{self.name}: the worker exited (code {self.proc.wait()}); see above.')
    return json.loads(line)

  def ask(self, request: dict) -> dict:
    self.proc.stdin.write(json.dumps(request) + '\n')
    self.proc.stdin.flush()
    return self._read()

  def close(self):
    if self.proc.poll() is None:
      self.proc.stdin.close()
      self.proc.wait(timeout=60)


def export_revision(rev: str, into: str) -> str:
  """The tree of git revision `rev`, written under `into` (for jax@REV contenders)."""
  target = os.path.join(into, rev.replace('/', '_').replace('~', '-').replace('^', '-'))
  if not os.path.isdir(target):
    os.makedirs(target)
    archive = subprocess.run(['git', 'archive', rev], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(['tar', '-x', '-C', target], input=archive, check=True)
  return target


def start(spec: str, net: str, args, tmp: str, params_path: str | None) -> Worker:
  kind, *flags = spec.split('+')
  kind, *overrides = kind.split(':')
  kind, _, rev = kind.partition('@')
  if kind not in ('jax', 'torch') or (kind == 'torch' and (flags or overrides or rev)):
    raise SystemExit(f'Unknown contender {spec!r}: use jax[@REV][:KEY=VALUE...][+FLAG...] or '
                     'torch.')
  code = export_revision(rev, tmp) if rev else ROOT
  env = dict(os.environ)
  if flags:
    env['XLA_FLAGS'] = ' '.join([env.get('XLA_FLAGS', '')] + flags).strip()
  argv = [sys.executable, os.path.abspath(__file__), f'--worker={kind}', f'--net={net}',
          f'--code={code}', f'--params={params_path or ""}',
          *[f'--override={o}' for o in overrides],
          f'--save_params={os.path.join(tmp, net + ".npz") if params_path is None else ""}']
  return Worker(spec, argv, env, cwd=code)


def _fmt_range(values):
  return f'{min(values):.2f}-{max(values):.2f}' if len(values) > 1 else f'{values[0]:.2f}'


def run_net(net: str, args, tmp: str) -> None:
  steps = args.steps or DEFAULT_STEPS[net]
  specs = args.contender or ['jax', 'torch']
  first_jax = next((s for s in specs if s.startswith('jax')), None)
  if first_jax is None:
    raise SystemExit('Name at least one jax --contender (it makes the parameters).')
  print(f'\n== {net} net: batch {NETS[net][1]}, {steps} steps per round, {args.rounds} rounds; '
        f'load before: {load()}', flush=True)
  workers = {first_jax: start(first_jax, net, args, tmp, None)}
  params = workers[first_jax].ready['params']
  for spec in specs:
    if spec not in workers:
      workers[spec] = start(spec, net, args, tmp, params)
  for spec, w in workers.items():
    r = w.ready
    print(f'{spec:<28} ready: compile + first step {r["first_step_s"]:.1f} s, loss '
          f'{r["loss"]:.4f}; {r["info"]}', flush=True)
  flops = workers[first_jax].ready['flops']
  rates = {s: [] for s in specs}
  cpu_ms = {s: [] for s in specs}  # CPU time per image: steadier than wall time under load
  matmul = {s: [] for s in specs}
  order = list(specs)
  for round_index in range(args.rounds):
    for spec in order:
      out = workers[spec].ask({'steps': steps})
      rates[spec].append(NETS[net][1] * steps / out['seconds'])
      cpu_ms[spec].append(1000 * out['cpu_seconds'] / (NETS[net][1] * steps))
      matmul[spec].append(out['matmul_flops_per_s'])
    order.reverse()  # alternate who goes first
    print(f'round {round_index + 1}: ' + ', '.join(
        f'{s} {rates[s][-1]:.1f} img/s' for s in specs) + f'; load {load()}', flush=True)
  for w in workers.values():
    w.close()
  jax_matmul = statistics.median(matmul[first_jax])
  print(f'\nmodel FLOPs per image (train step): {flops / 1e9:.2f} G; matmul rate '
        + ', '.join(f'{s} {statistics.median(matmul[s]) / 1e9:.0f} GFLOP/s' for s in specs))
  # Ratios per round (both contenders measured back to back), then their median and range.
  baselines = [('torch', 'vs torch')] if 'torch' in rates else []
  if specs[0] != 'torch' and len([s for s in specs if s != 'torch']) > 1:
    baselines.append((specs[0], 'vs first'))
  print(f'{"contender":<28} {"images/s":>9} {"best":>7} {"share":>6} {"CPU ms/img":>10}' + ''.join(
      f' {title:>9} {"per round":>11}' for _, title in baselines))
  for spec in specs:
    median = statistics.median(rates[spec])
    line = (f'{spec:<28} {median:9.1f} {max(rates[spec]):7.1f} {median * flops / jax_matmul:6.2f} '
            f'{statistics.median(cpu_ms[spec]):10.2f}')
    for base, _ in baselines:
      if spec in (base, 'torch'):
        line += f' {"":>9} {"":>11}'
        continue
      per_round = [a / b for a, b in zip(rates[spec], rates[base])]
      line += f' {statistics.median(per_round):9.2f} {_fmt_range(per_round):>11}'
    print(line)
  print(f'(share: of the jnp.dot rate of {first_jax}; load after: {load()})', flush=True)


# ----------------------------------------------------------------------------- worker side
def _requests():
  for line in sys.stdin:
    yield json.loads(line)


def _reply(obj):
  sys.stdout.write(json.dumps(obj) + '\n')
  sys.stdout.flush()


def _batch(config, batch: int):
  """uint8 crops [B, S, S, 3], labels, and a mean image [R, R, 3] (R: the resize size) in
  0-255 units, as the input pipeline and its stats file hand them to the step."""
  import numpy as np
  rng = np.random.default_rng(0)
  size, resize = config.model.input_size, config.data.resize_size
  crops = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
  labels = rng.integers(0, config.model.num_classes, batch).astype(np.int32)
  return crops, labels, rng.uniform(0, 255, (resize, resize, 3)).astype(np.float32)


def serve_jax(args):
  import jax
  import jax.numpy as jnp
  import numpy as np
  import jax_contender  # next to this file (the script's folder is on sys.path)
  from alexnet_jax import parallel

  config_arg, batch = NETS[args.net]
  config = jax_contender.make_config(config_arg, batch, args.override)
  crops, labels, mean_image = _batch(config, batch)
  state, shardings, step, takes_uint8, mesh = jax_contender.build_step(config, mean_image)
  state, saved = jax_contender.share_params(state, shardings, config, args.params,
                                            args.save_params)
  images = crops if takes_uint8 else ((crops - 128.0) * config.data.input_scale).astype(
      np.float32)
  data = parallel.global_batch(mesh, {'image': images, 'label': labels,
                                      'weight': np.ones(batch, np.float32)})
  lr = jnp.float32(0.01)
  start = time.perf_counter()
  state, metrics = step(state, data, lr, jnp.int32(0))
  loss = float(metrics['loss'])
  _reply({'first_step_s': time.perf_counter() - start, 'loss': loss, 'params': saved,
          'flops': jax_contender.model_flops(config.model), 'info': jax_contender.describe()})
  index = 1
  for request in _requests():
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(request['steps']):
      state, metrics = step(state, data, lr, jnp.int32(index))
      index += 1
    jax.block_until_ready(metrics)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    _reply({'seconds': seconds, 'cpu_seconds': cpu,
            'matmul_flops_per_s': jax_contender.matmul_rate(MATMUL_N)})


def serve_torch(args):
  import numpy as np
  import torch_contender  # next to this file (the script's folder is on sys.path)
  from configs.alexnet import get_config

  config_arg, batch = NETS[args.net]
  config = get_config(config_arg)
  step = torch_contender.make_step(config, dict(np.load(args.params)), *_batch(config, batch))
  start = time.perf_counter()
  loss = step().item()
  _reply({'first_step_s': time.perf_counter() - start, 'loss': loss,
          'info': torch_contender.describe()})
  for request in _requests():
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(request['steps']):
      step()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    _reply({'seconds': seconds, 'cpu_seconds': cpu,
            'matmul_flops_per_s': torch_contender.matmul_rate(MATMUL_N)})


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--nets', default='paper,quickstart')
  parser.add_argument('--contender', action='append',
                      help='jax[@REV][:KEY=VALUE...][+FLAG...] or torch (repeat; default: '
                      'jax and torch)')
  parser.add_argument('--rounds', type=int, default=3, help='the length of the run')
  parser.add_argument('--steps', type=int, default=0,
                      help='steps per round and contender (0: 3 for paper, 10 for quickstart)')
  parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
  parser.add_argument('--net', default='', help=argparse.SUPPRESS)
  parser.add_argument('--code', default='', help=argparse.SUPPRESS)
  parser.add_argument('--params', default='', help=argparse.SUPPRESS)
  parser.add_argument('--save_params', default='', help=argparse.SUPPRESS)
  parser.add_argument('--override', action='append', default=[], help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    sys.path.insert(0, args.code)  # the contender's code (this checkout, or REV's tree)
    serve_jax(args) if args.worker == 'jax' else serve_torch(args)
    return
  nets = args.nets.split(',')
  for net in nets:
    if net not in NETS:
      raise SystemExit(f'Unknown net {net!r}: use {", ".join(NETS)}.')
  print(f'bench/train_step.py {shlex.join(sys.argv[1:])}; {os.cpu_count()} CPU cores; '
        f'{time.strftime("%Y-%m-%d %H:%M")}')
  with tempfile.TemporaryDirectory() as tmp:
    for net in nets:
      run_net(net, args, tmp)


if __name__ == '__main__':
  main()
