"""The launch tools: sweep expansion over seeds, the SLURM and TPU-VM scripts (the latter run
against a stand-in gcloud), and that they run as modules and installed commands."""

import importlib.metadata
import json
import os
import shlex
import stat
import subprocess
import sys

import pytest

from launch import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, 'configs/ablations.py') + ':quickstart'


def test_sweep_expands_runs_and_seeds(tmp_path):
  spec = sweep.load_sweep(SPEC)
  assert spec['seeds'] == 3  # the sweep's own field
  runs = sweep.expand(spec, str(tmp_path), ['--config.num_epochs=5'])
  names = [name for name, _ in spec['runs']]
  assert [(r.name, r.seed) for r in runs] == [(n, s) for n in names for s in range(3)]
  no_lrn = {r.seed: r for r in runs if r.name == 'no_lrn'}
  assert no_lrn[2].workdir == f'{tmp_path}/no_lrn/seed2'
  assert no_lrn[2].args == ('--config=configs/alexnet.py:quickstart',
                            f'--workdir={tmp_path}/no_lrn/seed2', '--config.model.lrn=False',
                            '--config.seed=2', '--config.num_epochs=5')
  baseline = [r for r in runs if r.name == 'baseline'][0]
  assert baseline.args[2:] == ('--config.seed=0', '--config.num_epochs=5')
  # --seeds overrides the field; --only picks runs; the seed belongs to the sweep.
  two = sweep.expand(spec, str(tmp_path), [], seeds=2, only=['tanh'])
  assert [(r.name, r.seed) for r in two] == [('tanh', 0), ('tanh', 1)]
  with pytest.raises(SystemExit, match='--seeds'):
    sweep.expand(spec, str(tmp_path), ['--config.seed=4'])
  with pytest.raises(SystemExit, match='no_such_run'):
    sweep.expand(spec, str(tmp_path), [], only=['no_such_run'])


def test_sweep_json_and_slurm_script(tmp_path):
  assert sweep.main([f'--sweep={SPEC}', f'--root={tmp_path}', '--seeds=2', '--only=no_lrn',
                     '--backend=slurm', '--write_only', '--slurm_args=--gres=gpu:2']) == 0
  record = json.loads((tmp_path / 'sweep.json').read_text())
  assert record['seeds'] == 2 and record['paper_deltas']['no_lrn'] == [1.4, 1.2]
  assert len(record['commands']) == 16  # the whole sweep, whatever --only runs now
  assert '--config.seed=1' in record['commands']['tanh/seed1']
  script = (tmp_path / 'sweep.sbatch').read_text().splitlines()
  assert '#SBATCH --array=0-1' in script and '#SBATCH --gres=gpu:2' in script
  assert f'cd {ROOT}' in script
  task = next(line for line in script if line.startswith('  1) exec '))
  argv = shlex.split(task.split(') exec ', 1)[1].split(' ;;')[0])
  assert argv[1:4] == ['main.py', '--config=configs/alexnet.py:quickstart',
                       f'--workdir={tmp_path}/no_lrn/seed1']


def test_tpu_vm_script_starts_main_on_every_host(tmp_path):
  root = tmp_path / 'abl'
  assert sweep.main([f'--sweep={SPEC}', f'--root={root}', '--seeds=2', '--only=baseline,tanh',
                     '--backend=tpu_vm', '--write_only', '--tpu_name=v4-32', '--tpu_zone=zone-b',
                     '--tpu_project=proj', '--tpu_repo=/home/me/alexnet jax',
                     '--config.num_epochs=5']) == 0
  script = root / 'sweep_tpu_vm.sh'
  assert script.stat().st_mode & stat.S_IXUSR
  # Run it with a stand-in gcloud that records its arguments, one JSON line per call.
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  log = tmp_path / 'gcloud.log'
  fake = bin_dir / 'gcloud'
  fake.write_text(f'#!{sys.executable}\nimport json, sys\n'
                  f'open({str(log)!r}, "a").write(json.dumps(sys.argv[1:]) + "\\n")\n')
  fake.chmod(0o755)
  env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
  result = subprocess.run(['bash', str(script)], env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  calls = [json.loads(line) for line in log.read_text().splitlines()]
  assert len(calls) == 4
  for call, (name, seed) in zip(calls, [('baseline', 0), ('baseline', 1), ('tanh', 0),
                                        ('tanh', 1)]):
    command = call.pop()
    assert call == ['compute', 'tpus', 'tpu-vm', 'ssh', 'v4-32', '--zone=zone-b',
                    '--project=proj', '--worker=all']
    assert command.startswith('--command=')
    words = shlex.split(command[len('--command='):])
    assert words[:4] == ['cd', '/home/me/alexnet jax', '&&', 'python3']
    assert words[4:7] == ['main.py', '--config=configs/alexnet.py:quickstart',
                          f'--workdir={root}/{name}/seed{seed}']
    assert f'--config.seed={seed}' in words and '--config.num_epochs=5' in words
    assert words[-1] == '--tpu_vm'
  assert '=== tanh, seed 1' in result.stdout


def test_main_accepts_the_tpu_vm_flag():
  result = subprocess.run([sys.executable, 'main.py', '--config=configs/alexnet.py:quickstart',
                           '--mode=summary', '--tpu_vm'], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'Total parameters' in result.stdout


def test_launch_tools_run_as_modules_and_commands(tmp_path):
  for name in ('sweep', 'report', 'study'):
    source = open(os.path.join(ROOT, 'launch', f'{name}.py')).read()
    assert 'sys.path' not in source
    # From another folder: the installed package, no path tricks.
    result = subprocess.run([sys.executable, '-m', f'launch.{name}', '--help'], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and '--root' in result.stdout, result.stderr
  scripts = {e.name: e for e in importlib.metadata.entry_points(group='console_scripts')
             if e.name.startswith('alexnet-')}
  assert {n: scripts[n].value for n in scripts} == {
      'alexnet-sweep': 'launch.sweep:main', 'alexnet-report': 'launch.report:main',
      'alexnet-study': 'launch.study:main'}
  assert scripts['alexnet-report'].load() is __import__('launch.report').report.main
