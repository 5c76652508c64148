"""fileio: atomic replace, appends, and reading back what a kill may leave.

The kill tests run a real process that SIGKILLs itself inside the write
(tests/kill_during_write.py) and read what is on disk afterwards.
"""

import json
import os
import signal
import stat
import subprocess
import sys

import pytest

from alexnet_jax.record import fileio

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KILLER = os.path.join(ROOT, 'tests', 'kill_during_write.py')

# Writes argv[2] to argv[1] with the function named by argv[3].
WRITER = '''
import sys
sys.path.insert(0, {root!r})
from alexnet_jax.record import fileio
path, text, how = sys.argv[1:]
if how == 'atomic':
  fileio.write_atomic(path, text)
else:
  fileio.append_line(path, text)
'''


def _write_killed(tmp_path, name, when, text, how):
  script = tmp_path / 'writer.py'
  script.write_text(WRITER.format(root=ROOT))
  return subprocess.run([sys.executable, KILLER, name, when, '1', str(script),
                         str(tmp_path / name), text, how], capture_output=True, text=True,
                        timeout=120)


@pytest.mark.parametrize('when', ['write', 'rename'])
def test_a_kill_inside_write_atomic_leaves_the_old_content(tmp_path, when):
  path = tmp_path / 'record.json'
  path.write_text('{"old": true}\n')
  new = json.dumps({'new': list(range(1000))})
  killed = _write_killed(tmp_path, 'record.json', when, new, 'atomic')
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert path.read_text() == '{"old": true}\n'
  # The temporary file may stay behind (a kill leaves it); it is never the file itself.
  leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith('.record.json.')]
  assert all(n.endswith('.tmp') for n in leftovers)
  fileio.write_atomic(str(path), new)  # and the next write works
  assert path.read_text() == new


def test_a_kill_inside_an_append_tears_only_the_last_line(tmp_path):
  path = tmp_path / 'rows.jsonl'
  for step in (1, 2):
    fileio.append_line(str(path), json.dumps({'step': step, 'loss': 0.5}))
  killed = _write_killed(tmp_path, 'rows.jsonl', 'write', json.dumps({'step': 3, 'loss': 0.25}),
                         'append')
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  rows, torn = fileio.read_jsonl(str(path))
  assert rows == [{'step': 1, 'loss': 0.5}, {'step': 2, 'loss': 0.5}]
  assert torn and '{"step": 3, "loss": 0.25}'.startswith(torn)
  assert fileio.rewrite_jsonl(str(path), lambda row: True) == 0
  fileio.append_line(str(path), json.dumps({'step': 3}))
  assert path.read_text().splitlines() == ['{"step": 1, "loss": 0.5}',
                                           '{"step": 2, "loss": 0.5}', '{"step": 3}']


def test_write_atomic_replaces_and_keeps_no_temporary_file(tmp_path):
  path = tmp_path / 'a.json'
  fileio.write_json_atomic(str(path), {'a': 1})
  fileio.write_json_atomic(str(path), {'a': 2}, indent=2)
  assert json.loads(path.read_text()) == {'a': 2}
  assert os.listdir(tmp_path) == ['a.json']


def test_read_jsonl_tells_a_torn_last_line_from_damage(tmp_path):
  path = tmp_path / 'm.jsonl'
  path.write_bytes(b'{"step": 1}\n\n{"step": 2}\n{"step": 3, "lo')
  assert fileio.read_jsonl(str(path)) == ([{'step': 1}, {'step': 2}], '{"step": 3, "lo')
  # A whole last object that only lost its newline is a row; the rewrite adds the newline.
  path.write_bytes(b'{"step": 1}\n{"step": 2}')
  assert fileio.read_jsonl(str(path)) == ([{'step': 1}, {'step': 2}], None)
  assert fileio.rewrite_jsonl(str(path), lambda row: True) == 0
  assert path.read_bytes() == b'{"step": 1}\n{"step": 2}\n'
  # A bad line before the last is not a kill: it is named.
  path.write_bytes(b'{"step": 1}\n{"st\n{"step": 3}\n')
  with pytest.raises(fileio.DamagedFile, match=r'm.jsonl line 2 is not a JSON object'):
    fileio.read_jsonl(str(path))
  path.write_bytes(b'[1, 2]\n')
  with pytest.raises(fileio.DamagedFile, match='line 1'):
    fileio.read_jsonl(str(path))


def test_rewrite_jsonl_keeps_lines_as_they_were(tmp_path):
  path = tmp_path / 'm.jsonl'
  path.write_bytes(b'{"step": 1, "x": 1.50}\n{"step":2}\n{"step": 3}\n{"step": 4, "l')
  assert fileio.rewrite_jsonl(str(path), lambda row: row['step'] <= 2) == 1
  assert path.read_bytes() == b'{"step": 1, "x": 1.50}\n{"step":2}\n'
  assert fileio.rewrite_jsonl(str(path), lambda row: True) == 0  # nothing to do: not written


def test_read_json_names_what_is_wrong(tmp_path):
  path = tmp_path / 'config.json'
  path.write_text('{"model": {"width": 0.2')
  with pytest.raises(fileio.DamagedFile, match=r'config.json is not JSON \(line 1, column 24'):
    fileio.read_json(str(path))
  path.write_bytes(b'\xff\xfe\x00garbage')
  with pytest.raises(fileio.DamagedFile, match='is not JSON'):
    fileio.read_json(str(path))
  with pytest.raises(FileNotFoundError):
    fileio.read_json(str(tmp_path / 'missing.json'))


def test_remove_temporaries_removes_only_those_of_the_file(tmp_path):
  for name in ('.a.json.x1.tmp', '.a.json.x2.tmp', '.b.json.x.tmp', 'a.json', '.a.json.keep'):
    (tmp_path / name).write_text('x')
  assert sorted(fileio.remove_temporaries(str(tmp_path / 'a.json'))) == ['.a.json.x1.tmp',
                                                                         '.a.json.x2.tmp']
  assert sorted(os.listdir(tmp_path)) == ['.a.json.keep', '.b.json.x.tmp', 'a.json']


def test_write_atomic_gives_the_mode_of_a_plain_write(tmp_path):
  old = os.umask(0o022)
  try:
    fileio.write_atomic(str(tmp_path / 'new.md'), 'x')
    with open(tmp_path / 'plain.md', 'w') as f:
      f.write('x')
  finally:
    os.umask(old)
  mode = lambda name: stat.S_IMODE(os.stat(tmp_path / name).st_mode)
  assert mode('new.md') == mode('plain.md') == 0o644
