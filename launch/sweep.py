"""Runs a sweep (configs/ablations.py) locally, one run after another, or on SLURM.

  python launch/sweep.py --sweep=configs/ablations.py:quickstart --root=runs/abl
  python launch/sweep.py --sweep=configs/ablations.py --root=runs/abl --backend=slurm \
      --slurm_args='--gres=gpu:2 --time=7-00:00:00'
  python launch/sweep.py ... --backend=print      # only show the commands

Every run gets its own workdir, root/NAME, which records its resolved config, command line
and metrics (see alexnet_jax/tracking.py); root/sweep.json records the sweep itself.
Running the same command again resumes unfinished runs (each workdir resumes by itself).
"""

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_sweep(spec: str) -> dict:
  path, _, arg = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('sweep_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_sweep(arg or None)


def _flag(key, value):
  if isinstance(value, (tuple, list)):
    value = '(' + ','.join(str(v) for v in value) + (',)' if len(value) == 1 else ')')
  return f'--config.{key}={value}'


def commands(sweep: dict, root: str, extra: list[str], only: list[str] | None = None):
  """(name, argv) for every run of the sweep."""
  out = []
  for name, overrides in sweep['runs']:
    if only and name not in only:
      continue
    argv = [sys.executable, os.path.join(ROOT, 'main.py'),
            f'--config={os.path.join(ROOT, sweep["base_config"])}',
            f'--workdir={os.path.join(root, name)}']
    argv += [_flag(k, v) for k, v in overrides.items()] + list(extra)
    out.append((name, argv))
  return out


def write_slurm(root: str, runs, slurm_args: str) -> str:
  lines = ['#!/bin/bash', f'#SBATCH --array=0-{len(runs) - 1}', '#SBATCH --job-name=alexnet-sweep',
           f'#SBATCH --output={root}/%x-%a.out']
  lines += [f'#SBATCH {arg}' for arg in shlex.split(slurm_args)]
  lines += ['case "$SLURM_ARRAY_TASK_ID" in']
  for i, (_, argv) in enumerate(runs):
    lines.append(f'  {i}) exec {shlex.join(argv)} ;;')
  lines.append('esac')
  path = os.path.join(root, 'sweep.sbatch')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--sweep', required=True, help='e.g. configs/ablations.py:quickstart')
  parser.add_argument('--root', required=True, help='folder that holds one workdir per run')
  parser.add_argument('--backend', choices=['local', 'slurm', 'print'], default='local')
  parser.add_argument('--only', default='', help='comma-separated run names')
  parser.add_argument('--slurm_args', default='', help='extra #SBATCH lines, e.g. --gres=gpu:2')
  args, extra = parser.parse_known_args(argv)
  sweep = load_sweep(args.sweep)
  root = os.path.abspath(args.root)
  os.makedirs(root, exist_ok=True)
  runs = commands(sweep, root, extra, [n for n in args.only.split(',') if n])
  with open(os.path.join(root, 'sweep.json'), 'w') as f:
    json.dump({'sweep': args.sweep, **sweep, 'commands': {n: a for n, a in runs}}, f, indent=2)
  if args.backend == 'print':
    for name, argv in runs:
      print(f'# {name}\n{shlex.join(argv)}')
    return 0
  if args.backend == 'slurm':
    path = write_slurm(root, runs, args.slurm_args)
    print(f'Wrote {path}; submitting with sbatch.')
    return subprocess.call(['sbatch', path])
  failed = []
  for name, argv in runs:
    print(f'=== {name}: {shlex.join(argv[2:])}', flush=True)
    if subprocess.call(argv, cwd=ROOT):
      failed.append(name)
  print(f'Done: {len(runs) - len(failed)} runs finished, failed: {failed or "none"}. '
        f'Report: python launch/report.py --root={args.root}')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
