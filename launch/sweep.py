"""Runs a sweep (configs/ablations.py), each run over several seeds: here one after another, as a
SLURM array, or on a multi-host TPU VM.

  python -m launch.sweep --sweep=configs/ablations.py:quickstart --root=runs/abl --seeds=3
  python -m launch.sweep --sweep=configs/ablations.py --root=runs/abl --backend=slurm \
      --slurm_args='--gres=gpu:2 --time=7-00:00:00'
  python -m launch.sweep ... --backend=slurm \
      --slurm_args='--nodes=2 --ntasks-per-node=8 --gres=gpu:8'   # each run on 16 GPUs
  python -m launch.sweep --sweep=configs/ablations.py --root=/mnt/shared/abl --backend=tpu_vm \
      --tpu_name=my-v4-32 --tpu_zone=us-central2-b --tpu_repo=/home/me/alexnet-jax
  python -m launch.sweep ... --backend=print      # only show the commands

(installed: `alexnet-sweep ...`). Arguments it does not know (`--config.num_epochs=5`) go to every
run's main.py. Every run and seed gets its own workdir, ROOT/NAME/seedK (config.seed = K), which
records its resolved config, command line and metrics (alexnet_jax/record/tracking.py);
ROOT/sweep.json records the sweep, its seeds and every command. Running the same command again resumes unfinished
runs (each workdir resumes by itself) and skips finished ones.

Backends:
- local: the runs one after another on this machine. Ctrl-C reaches the run in progress too
  (it is in the same process group) and stops it; the launcher waits for it, then ends with one
  line naming the run (status 130); the same command resumes. A SIGINT sent to the launcher
  alone (kill -INT) lets the run in progress finish, then stops the same way.
- slurm: writes ROOT/sweep.sbatch, an array job with one array task per run and seed, and
  submits it with sbatch (`--write_only`: only write it). Each array task starts its run with
  srun, so a run may span several SLURM tasks or nodes (--slurm_args='--ntasks=2'): main.py
  joins them by itself (alexnet_jax/parallel.py, from srun's SLURM_* variables). On GPUs, give
  one task per GPU: JAX's SLURM detection gives each task the one device of its SLURM_LOCALID.
  Logs go to ROOT/alexnet-sweep-JOBID_TASK.out: a resubmission keeps the earlier ones.
- tpu_vm: writes ROOT/sweep_tpu_vm.sh, which runs the runs one after another on every host of a
  TPU VM at once (`gcloud compute tpus tpu-vm ssh NAME --worker=all --command=...`, main.py with
  --tpu_vm so that the hosts join each other), and runs it (`--write_only`: only write it). The
  checkout must be at --tpu_repo on every host, and ROOT on storage every host sees at the same
  path (orbax checkpoints are written by all hosts).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import shlex
import signal
import subprocess
import sys

from alexnet_jax.record import fileio

# The checkout: main.py and configs/ are found relative to it.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The exit status of a local sweep stopped by Ctrl-C, as a shell reports a process ended by
# SIGINT (128 + 2).
INTERRUPTED = 128 + signal.SIGINT
# How each SLURM array task starts its run: one job step with the allocation's tasks; if one
# task fails, the others are stopped rather than left waiting for it in a collective.
SRUN = ('srun', '--kill-on-bad-exit=1')


def checkout() -> str:
  """ROOT, after checking it is a checkout (the runs start its main.py)."""
  if not os.path.isfile(os.path.join(ROOT, 'main.py')):
    raise SystemExit(f'No main.py in {ROOT}: the launch tools run the checkout\'s main.py; '
                     'install the project with pip install -e . from a checkout.')
  return ROOT


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of the sweep with one seed: main.py's arguments, relative to the checkout."""
  name: str
  seed: int
  workdir: str
  args: tuple[str, ...]


def load_sweep(spec: str) -> dict:
  """get_sweep(arg) of a sweep file ('configs/ablations.py:quickstart')."""
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise SystemExit(f'Bad --sweep={spec}: no such file {path}')
  module_spec = importlib.util.spec_from_file_location('sweep_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_sweep(arg or None)


def _flag(key, value):
  if isinstance(value, (tuple, list)):
    value = '(' + ','.join(str(v) for v in value) + (',)' if len(value) == 1 else ')')
  return f'--config.{key}={value}'


def seed_workdir(root: str, name: str, seed: int) -> str:
  return os.path.join(root, name, f'seed{seed}')


def expand(sweep: dict, root: str, extra: list[str], seeds: int | None = None,
           only: list[str] | None = None) -> list[Run]:
  """Every (run, seed) of the sweep, runs in the sweep's order, seeds 0..N-1 within each run.

  `seeds` overrides the sweep's own `seeds` field (default 1)."""
  if any(a.startswith(('--config.seed=', '--config.seed ')) for a in extra):
    raise SystemExit('--config.seed is set by the sweep (seeds 0..N-1): use --seeds=N.')
  count = seeds or sweep.get('seeds', 1)
  if count < 1:
    raise SystemExit(f'--seeds={count}: give at least 1.')
  names = [name for name, _ in sweep['runs']]
  unknown = sorted(set(only or []) - set(names))
  if unknown:
    raise SystemExit(f'--only names runs the sweep does not have: {", ".join(unknown)} '
                     f'(its runs: {", ".join(names)}).')
  out = []
  for name, overrides in sweep['runs']:
    if only and name not in only:
      continue
    for seed in range(count):
      workdir = seed_workdir(root, name, seed)
      args = [f'--config={sweep["base_config"]}', f'--workdir={workdir}']
      args += [_flag(k, v) for k, v in overrides.items()] + [f'--config.seed={seed}']
      out.append(Run(name, seed, workdir, tuple(args + list(extra))))
  return out


def local_argv(run: Run, python: str = sys.executable) -> list[str]:
  """The command that runs `run` here (from the checkout, ROOT)."""
  return [python, 'main.py', *run.args]


def write_slurm(root: str, runs: list[Run], slurm_args: str) -> str:
  """ROOT/sweep.sbatch: an array job, array task i runs runs[i] from the checkout with srun
  (its log: ROOT/NAME-JOBID_i.out, %A being the array's job id)."""
  lines = ['#!/bin/bash', f'#SBATCH --array=0-{len(runs) - 1}', '#SBATCH --job-name=alexnet-sweep',
           f'#SBATCH --output={root}/%x-%A_%a.out']
  lines += [f'#SBATCH {arg}' for arg in shlex.split(slurm_args)]
  lines += ['# srun starts the run on every task of the allocation (--ntasks, --nodes above);',
            '# main.py joins them by itself (alexnet_jax/parallel.py reads srun\'s SLURM_*).',
            f'cd {shlex.quote(checkout())}', 'case "$SLURM_ARRAY_TASK_ID" in']
  for i, run in enumerate(runs):
    command = shlex.join([*SRUN, *local_argv(run)])
    lines.append(f'  {i}) exec {command} ;;  # {run.name}, seed {run.seed}')
  lines.append('esac')
  path = os.path.join(root, 'sweep.sbatch')
  fileio.write_atomic(path, '\n'.join(lines) + '\n')
  return path


def tpu_vm_command(run: Run, repo: str, python: str) -> str:
  """What every host of the TPU VM runs for `run`."""
  return f'cd {shlex.quote(repo)} && ' + shlex.join([python, 'main.py', *run.args, '--tpu_vm'])


def write_tpu_vm(root: str, runs: list[Run], *, name: str, zone: str, project: str = '',
                 repo: str = ROOT, python: str = 'python3') -> str:
  """ROOT/sweep_tpu_vm.sh: the runs one after another, each on every host at once."""
  ssh = ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', name, f'--zone={zone}']
  ssh += [f'--project={project}'] if project else []
  lines = ['#!/bin/bash',
           '# Each command starts main.py on every host of the TPU VM (--worker=all); the hosts',
           '# join each other (--tpu_vm: JAX reads the TPU metadata). Runs go one after another;',
           '# running this again resumes unfinished runs and skips finished ones.',
           'set -euo pipefail']
  for run in runs:
    lines.append(f'echo {shlex.quote(f"=== {run.name}, seed {run.seed}")}')
    command = tpu_vm_command(run, repo, python)
    lines.append(shlex.join(ssh + ['--worker=all', f'--command={command}']))
  path = os.path.join(root, 'sweep_tpu_vm.sh')
  fileio.write_atomic(path, '\n'.join(lines) + '\n')
  os.chmod(path, 0o755)
  return path


def record(root: str, spec: str, sweep: dict, runs: list[Run], seeds: int) -> None:
  """ROOT/sweep.json: the sweep, its seeds and every run's command (read by the report)."""
  fileio.write_json_atomic(os.path.join(root, 'sweep.json'), {
      'sweep': spec, **sweep, 'seeds': seeds,
      'commands': {f'{r.name}/seed{r.seed}': list(r.args) for r in runs}}, indent=2)


class Interrupted(Exception):
  """Ctrl-C stopped a local sweep; args[0] is the Run that was running."""


def call(argv: list[str]) -> int:
  """Runs `argv` from the checkout; its exit status. On Ctrl-C, which the child receives too
  (same process group), waits for the child to stop as it does on Ctrl-C (later Ctrl-Cs are
  left to it), then raises KeyboardInterrupt; subprocess.call would kill it instead."""
  child = subprocess.Popen(argv, cwd=checkout())
  try:
    return child.wait()
  except KeyboardInterrupt:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
      child.wait()
    finally:
      signal.signal(signal.SIGINT, previous)
    raise


def run_local(runs: list[Run]) -> list[str]:
  """Runs one after another; returns the failed ones' names. Interrupted on Ctrl-C."""
  failed = []
  for run in runs:
    try:
      print(f'=== {run.name}, seed {run.seed}: {shlex.join(run.args)}', flush=True)
      if call(local_argv(run)):
        failed.append(f'{run.name}/seed{run.seed}')
    except KeyboardInterrupt:
      raise Interrupted(run) from None
  return failed


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--sweep', required=True, help='e.g. configs/ablations.py:quickstart')
  p.add_argument('--root', required=True, help='folder that holds one workdir per run and seed')
  p.add_argument('--seeds', type=int, default=0, help='seeds per run (0: the sweep\'s own)')
  p.add_argument('--backend', choices=['local', 'slurm', 'tpu_vm', 'print'], default='local')
  p.add_argument('--only', default='', help='comma-separated run names')
  p.add_argument('--write_only', action='store_true',
                 help='slurm / tpu_vm: write the script, do not submit or run it')
  p.add_argument('--slurm_args', default='', help='extra #SBATCH lines, e.g. --gres=gpu:2')
  p.add_argument('--tpu_name', default='', help='tpu_vm: the TPU VM')
  p.add_argument('--tpu_zone', default='', help='tpu_vm: its zone')
  p.add_argument('--tpu_project', default='', help='tpu_vm: its project (default: gcloud\'s)')
  p.add_argument('--tpu_repo', default=ROOT, help='tpu_vm: the checkout on every host')
  p.add_argument('--tpu_python', default='python3', help='tpu_vm: the Python on every host')
  return p


def main(argv=None) -> int:
  args, extra = parser().parse_known_args(argv)
  sweep = load_sweep(args.sweep)
  root = os.path.abspath(args.root)
  os.makedirs(root, exist_ok=True)
  seeds = args.seeds or sweep.get('seeds', 1)
  everything = expand(sweep, root, extra, seeds)
  record(root, args.sweep, sweep, everything, seeds)
  runs = expand(sweep, root, extra, seeds, [n for n in args.only.split(',') if n])
  if args.backend == 'print':
    print(f'# from the checkout: cd {shlex.quote(ROOT)}')
    for run in runs:
      print(f'# {run.name}, seed {run.seed}\n{shlex.join(local_argv(run))}')
    return 0
  if args.backend == 'slurm':
    path = write_slurm(root, runs, args.slurm_args)
    if args.write_only:
      print(f'Wrote {path}; submit it with: sbatch {path}')
      return 0
    print(f'Wrote {path}; submitting with sbatch.')
    return subprocess.call(['sbatch', path])
  if args.backend == 'tpu_vm':
    if not args.tpu_name or not args.tpu_zone:
      raise SystemExit('--backend=tpu_vm needs --tpu_name=NAME and --tpu_zone=ZONE.')
    path = write_tpu_vm(root, runs, name=args.tpu_name, zone=args.tpu_zone,
                        project=args.tpu_project, repo=args.tpu_repo, python=args.tpu_python)
    if args.write_only:
      print(f'Wrote {path}; run it with: bash {path}')
      return 0
    print(f'Wrote {path}; running it.')
    return subprocess.call(['bash', path])
  try:
    failed = run_local(runs)
  except Interrupted as e:
    run = e.args[0]
    print(f'Interrupted during {run.name}, seed {run.seed} ({run.workdir} keeps what it saved); '
          'run the same command again to resume.', file=sys.stderr)
    return INTERRUPTED
  print(f'Done: {len(runs) - len(failed)} of {len(runs)} runs finished, failed: '
        f'{", ".join(failed) or "none"}. Report: python -m launch.report --root={args.root}')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
