"""The launch tools: sweep expansion over seeds, the SLURM and TPU-VM scripts (run against
stand-in srun and gcloud commands), Ctrl-C during a local sweep, and that the tools run as
modules and installed commands."""

import importlib.metadata
import json
import os
import shlex
import stat
import signal
import subprocess
import sys
import time

import pytest

from launch import sweep
from tests.train_testlib import signal_state

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


# A stand-in srun: records its options and command (one JSON line), sets the variables srun
# gives one task of a one-task step, and runs the command in its place.
FAKE_SRUN = """#!{python}
import json, os, sys
args = sys.argv[1:]
options = []
while args[0].startswith('-'):
  options.append(args.pop(0))
open({log!r}, 'a').write(json.dumps({{'options': options, 'command': args}}) + '\\n')
os.environ.update(SLURM_JOB_ID='4242', SLURM_NTASKS='1', SLURM_STEP_NODELIST='localhost',
                  SLURM_PROCID='0', SLURM_LOCALID='0')
os.execvp(args[0], args)
"""


def test_sweep_json_and_slurm_script(tmp_path):
  root = tmp_path / 'abl'
  assert sweep.main([f'--sweep={SPEC}', f'--root={root}', '--seeds=2', '--only=no_lrn',
                     '--backend=slurm', '--write_only', '--slurm_args=--gres=gpu:2 --ntasks=2',
                     '--mode=summary']) == 0
  record = json.loads((root / 'sweep.json').read_text())
  assert record['seeds'] == 2 and record['paper_deltas']['no_lrn'] == [1.4, 1.2]
  assert len(record['commands']) == 16  # the whole sweep, whatever --only runs now
  assert '--config.seed=1' in record['commands']['tanh/seed1']
  script = (root / 'sweep.sbatch').read_text().splitlines()
  assert '#SBATCH --array=0-1' in script and '#SBATCH --gres=gpu:2' in script
  assert '#SBATCH --ntasks=2' in script
  # %A, the array's job id, in the log's name: a resubmission does not overwrite earlier logs.
  assert f'#SBATCH --output={root}/%x-%A_%a.out' in script
  assert f'cd {ROOT}' in script
  task = next(line for line in script if line.startswith('  1) exec '))
  argv = shlex.split(task.split(') exec ', 1)[1].split(' ;;')[0])
  # srun starts the run, so every task of the allocation runs main.py (which joins them).
  assert argv[:4] == ['srun', '--kill-on-bad-exit=1', sys.executable, 'main.py']
  assert argv[4:6] == ['--config=configs/alexnet.py:quickstart', f'--workdir={root}/no_lrn/seed1']
  # Array task 1 under the stand-in srun: the line is well formed and main.py runs it.
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  log = tmp_path / 'srun.log'
  (bin_dir / 'srun').write_text(FAKE_SRUN.format(python=sys.executable, log=str(log)))
  (bin_dir / 'srun').chmod(0o755)
  env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
             SLURM_ARRAY_TASK_ID='1')
  result = subprocess.run(['bash', str(root / 'sweep.sbatch')], env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Total parameters' in result.stdout
  call = json.loads(log.read_text())
  assert call == {'options': ['--kill-on-bad-exit=1'], 'command': argv[2:]}
  assert '--config.seed=1' in call['command'] and call['command'][-1] == '--mode=summary'


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


# The tiny net of tests/train/test_train.py on 6 images per class (54 training images, batch 8),
# saving every 4 steps, for far more steps than it gets to run before Ctrl-C.
TINY = ('--config.data.mini.images_per_class=6', '--config.data.resize_size=72',
        '--config.model.input_size=67', '--config.model.width=0.125', '--config.batch_size=8',
        '--config.eval.batch_size=8', '--config.num_steps=1000', '--config.eval.every_steps=0',
        '--config.eval.every_epochs=0', '--config.checkpoint.every_steps=4',
        '--config.schedule.name=constant', '--config.data.shuffle_buffer=16',
        '--config.progress=none')


def _wait_for_folder(path, process, timeout=600):
  """Waits until `path` exists (orbax renames a checkpoint into place once it is complete)."""
  deadline = time.time() + timeout
  while not os.path.isdir(path):
    if process.poll() is not None:
      raise AssertionError(f'the sweep ended before {path} appeared')
    if time.time() > deadline:
      raise AssertionError(f'{path} never appeared')
    time.sleep(0.05)


def test_ctrl_c_ends_a_local_sweep_with_one_line(tmp_path):
  root = tmp_path / 'abl'
  command = [sys.executable, '-m', 'launch.sweep', f'--sweep={SPEC}', f'--root={root}',
             '--seeds=1', '--only=baseline,tanh', f'--config.data.data_dir={tmp_path / "data"}',
             *TINY]
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             TF_CPP_MIN_LOG_LEVEL='2')
  with open(tmp_path / 'out', 'w') as out, open(tmp_path / 'err', 'w') as err:
    # In a session of its own, so that Ctrl-C can go to its process group, as a terminal's does.
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=err,
                               start_new_session=True)
    _wait_for_folder(root / 'baseline' / 'seed0' / 'checkpoints' / '4', process)
    masks = signal_state(process.pid)
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=300)
  stderr = (tmp_path / 'err').read_text()
  assert process.returncode == sweep.INTERRUPTED, (masks, stderr[-3000:])
  # The launcher's own output ends it: one line naming the run, after the run has stopped.
  assert stderr.splitlines()[-1] == (
      f'Interrupted during baseline, seed 0 ({root}/baseline/seed0 keeps what it saved); '
      'run the same command again to resume.')
  assert stderr.count('Interrupted during') == 1
  assert os.path.join('launch', 'sweep.py') not in stderr  # no traceback through the launcher
  assert not (root / 'tanh').exists()  # the sweep stopped: the next run never started
  assert '=== baseline, seed 0' in (tmp_path / 'out').read_text()


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
