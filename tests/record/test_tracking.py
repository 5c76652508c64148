"""The workdir record: config.json, run.json with git state, metrics.jsonl, config guard."""

import json
import os
import signal
import subprocess
import sys

import pytest

from alexnet_jax.record import fileio
from alexnet_jax.record import tracking
from configs.alexnet import get_config


def test_writes_record_and_metrics(tmp_path):
  config = get_config('quickstart')
  wd = tracking.Workdir(str(tmp_path), config, ['main.py', '--config=configs/alexnet.py'])
  wd.log(10, {'loss': 2.5, 'epoch': 0.5, 'learning_rate': 0.01})
  wd.log(20, {'loss': float('nan'), 'epoch': 1.0})
  wd.close()
  saved = json.load(open(tmp_path / 'config.json'))
  assert saved['model']['width'] == 0.25 and saved['batch_size'] == config.batch_size
  run = json.load(open(tmp_path / 'run.json'))[0]
  assert run['argv'][1:] == ['main.py', '--config=configs/alexnet.py']
  assert 'commit' in run and 'dirty' in run
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert rows[0] == {'step': 10, 'loss': 2.5, 'epoch': 0.5, 'learning_rate': 0.01}
  assert rows[1]['loss'] is None  # NaN is written as null: the file stays valid JSON
  assert any(name.startswith('events.out') for name in os.listdir(tmp_path))


def test_refuses_a_different_config_unless_told(tmp_path):
  tracking.Workdir(str(tmp_path), get_config('quickstart'), []).close()
  tracking.Workdir(str(tmp_path), get_config('quickstart'), []).close()  # same config: resumes
  other = get_config('quickstart')
  other.model.lrn = False
  with pytest.raises(tracking.WorkdirError, match='model.lrn: True -> False'):
    tracking.Workdir(str(tmp_path), other, [])
  assert json.load(open(tmp_path / 'config.json'))['model']['lrn'] is True  # untouched
  other.allow_config_change = True
  tracking.Workdir(str(tmp_path), other, []).close()
  assert json.load(open(tmp_path / 'config.json'))['model']['lrn'] is False


def test_truncate_after_drops_rows_a_resume_will_log_again(tmp_path):
  wd = tracking.Workdir(str(tmp_path), get_config('quickstart'), [])
  for step in (10, 20, 30):
    wd.log(step, {'loss': 1.0})
  fileio.append_line(str(tmp_path / 'metrics.jsonl'), '{"note": "no step", "step": "x"}')
  wd.truncate_after(20)
  assert [json.loads(l)['step'] for l in open(tmp_path / 'metrics.jsonl')] == [10, 20, 'x']


# --------------------------------------------------------------- damaged and killed records

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KILLER = os.path.join(ROOT, 'tests', 'kill_during_write.py')

# One start of a run on a workdir: argv = workdir, action (start | change | log | truncate).
START = '''
import sys
sys.path.insert(0, {root!r})
from alexnet_jax.record import tracking
from configs.alexnet import get_config
workdir, action = sys.argv[1:]
config = get_config('quickstart')
if action == 'change':
  config.model.lrn = False
  config.allow_config_change = True
wd = tracking.Workdir(workdir, config, ['main.py', action])
if action == 'log':
  wd.log(4, {{'loss': 0.25, 'epoch': 0.4}})
if action == 'truncate':
  wd.truncate_after(2)
wd.close()
'''


def _start(tmp_path, action, kill=None):
  """Runs one start in a new process; `kill`: (file name, 'write' | 'rename') to die inside."""
  script = tmp_path / 'start.py'
  script.write_text(START.format(root=ROOT))
  args = [sys.executable, str(script), str(tmp_path / 'wd'), action]
  if kill:
    args[1:1] = [KILLER, kill[0], kill[1], '1']
  return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT)


def _workdir_with_history(tmp_path):
  """A workdir after one start that logged steps 1-3."""
  wd = tracking.Workdir(str(tmp_path / 'wd'), get_config('quickstart'), ['main.py', 'first'])
  for step in (1, 2, 3):
    wd.log(step, {'loss': 1.0 / step})
  wd.close()
  return tmp_path / 'wd'


def _snapshot(workdir):
  return {name: (workdir / name).read_bytes() for name in sorted(os.listdir(workdir))
          if not name.startswith('events.out')}


@pytest.mark.parametrize('file,when,action', [
    ('config.json', 'write', 'change'), ('config.json', 'rename', 'change'),
    ('run.json', 'write', 'start'), ('run.json', 'rename', 'start'),
    ('metrics.jsonl', 'write', 'truncate'), ('metrics.jsonl', 'rename', 'truncate'),
    ('metrics.jsonl', 'write', 'log')])
def test_a_kill_inside_a_record_write_leaves_old_or_new_and_the_rerun_works(
    tmp_path, file, when, action):
  workdir = _workdir_with_history(tmp_path)
  before = _snapshot(workdir)
  killed = _start(tmp_path, action, kill=(file, when))
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  # Old or new content, whole: config.json, then run.json are written at the start, metrics
  # after it.
  config = json.load(open(workdir / 'config.json'))
  assert config['model']['lrn'] is True  # 'change' was killed while writing it, or later
  runs = json.load(open(workdir / 'run.json'))
  assert [r['argv'][1:] for r in runs] == [['main.py', 'first']] + (
      [['main.py', action]] if file == 'metrics.jsonl' else [])
  steps = [json.loads(line)['step'] for line in open(workdir / 'metrics.jsonl')
           if line.endswith('\n')]
  assert steps == [1, 2, 3]  # the truncation to step 2 and the row of step 4 are not done
  if file != 'metrics.jsonl' or action == 'truncate':
    assert _snapshot(workdir)[file] == before[file]
  # The same start again works, and does what it was to do.
  rerun = _start(tmp_path, action)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert 'Traceback' not in rerun.stderr
  if action == 'log':
    assert 'WARNING: the last line of' in rerun.stdout and 'cut short' in rerun.stdout
  rows = [json.loads(line) for line in open(workdir / 'metrics.jsonl')]
  assert [r['step'] for r in rows] == {'truncate': [1, 2], 'log': [1, 2, 3, 4]}.get(
      action, [1, 2, 3])
  assert len(json.load(open(workdir / 'run.json'))) == len(runs) + 1
  assert json.load(open(workdir / 'config.json'))['model']['lrn'] is (action != 'change')
  assert not [name for name in os.listdir(workdir) if name.endswith('.tmp')]  # cleaned up


@pytest.mark.parametrize('file,content,message', [
    ('config.json', '{"model": {"lrn": tr', r'config.json is not JSON \(line 1, column 19'),
    ('config.json', '', r'config.json is not JSON \(line 1, column 1'),
    ('run.json', '[{"argv": [', r'run.json is not JSON'),
    ('run.json', '{"argv": []}', r'run.json holds a JSON dict, not a list of starts'),
    ('metrics.jsonl', '{"step": 1}\n{"st\n{"step": 3}\n',
     r'metrics.jsonl line 2 is not a JSON object')])
def test_a_damaged_record_stops_with_one_line_and_changes_nothing(tmp_path, file, content,
                                                                  message):
  workdir = _workdir_with_history(tmp_path)
  (workdir / file).write_text(content)
  before = _snapshot(workdir)
  with pytest.raises(tracking.WorkdirError, match=message) as error:
    tracking.Workdir(str(workdir), get_config('quickstart'), [])
  text = str(error.value)
  assert '\n' not in text and str(workdir / file) in text
  assert 'delete' in text and 'Nothing was changed' in text
  assert _snapshot(workdir) == before
  if file == 'config.json':  # --mode=eval reads it too
    with pytest.raises(tracking.WorkdirError, match=message):
      tracking.check_model_config(str(workdir), get_config('quickstart'))


def test_a_workdir_that_is_a_file_or_under_one_is_named(tmp_path):
  from alexnet_jax.cli import commands as cli
  (tmp_path / 'f').write_text('x')
  assert 'is a file, not a folder' in cli.workdir_problem(str(tmp_path / 'f'))
  problem = cli.workdir_problem(str(tmp_path / 'f' / 'a' / 'b'))
  assert f'is under {tmp_path / "f"}, which is a file' in problem
  assert cli.workdir_problem(str(tmp_path / 'new' / 'run')) is None
  assert cli.workdir_problem(str(tmp_path)) is None


def test_starting_over_keeps_the_rows_of_the_earlier_start(tmp_path, capsys):
  workdir = _workdir_with_history(tmp_path)
  wd = tracking.Workdir(str(workdir), get_config('quickstart'), [])
  assert wd.start_over() == str(workdir / 'metrics-before-restart-1.jsonl')
  assert 'they are kept as' in capsys.readouterr().out
  assert [json.loads(l)['step'] for l in open(workdir / 'metrics-before-restart-1.jsonl')] == [
      1, 2, 3]
  assert not (workdir / 'metrics.jsonl').exists()
  assert wd.start_over() is None  # nothing more to keep
  wd.log(1, {'loss': 2.0})
  wd.close()
  assert [json.loads(l)['step'] for l in open(workdir / 'metrics.jsonl')] == [1]
