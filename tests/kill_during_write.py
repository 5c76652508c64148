"""A Python script, killed (SIGKILL) in the middle of writing a file of a given name.

  python tests/kill_during_write.py NAME WHEN NTH SCRIPT [ARGS...]

Runs SCRIPT (e.g. main.py) as __main__ with ARGS. The NTH time (from 1) that the process opens
a file named NAME for writing (or a temporary file `.NAME.*` that will be renamed to it), it is
killed:

  WHEN=write    inside the first write to that file, once half of the bytes are written
  WHEN=rename   just before that temporary file is renamed over NAME (its writes are done)

Fault injection for the tests that a kill at any instant leaves a file's old or new content,
kept out of the package. It watches open(), os.open(), os.fdopen(), os.write() and
os.replace()/os.rename(), so it kills inside a write however the code under test writes.
"""

import builtins
import os
import runpy
import signal
import sys

NAME, WHEN, NTH = sys.argv[1], sys.argv[2], int(sys.argv[3])
SCRIPT = sys.argv[4]
sys.argv = sys.argv[4:]
assert WHEN in ('write', 'rename'), WHEN

_open, _os_open, _fdopen, _write = builtins.open, os.open, os.fdopen, os.write
_replace, _rename = os.replace, os.rename
_opened = {'count': 0}
_armed_fds = set()   # descriptors of the NTH opening (WHEN=write)
_armed_paths = set()  # temporary files of the NTH opening (WHEN=rename)


def _die():
  os.kill(os.getpid(), signal.SIGKILL)


def _matches(path) -> bool:
  base = os.path.basename(os.fsdecode(path))
  return base == NAME or base.startswith(f'.{NAME}.')


def _fd_path(fd: int) -> str:
  try:
    return os.readlink(f'/proc/self/fd/{fd}')
  except OSError:
    return ''


def _is_nth_opening(path) -> bool:
  """Counts an opening for writing of a matching file; True for the NTH."""
  _opened['count'] += 1
  if _opened['count'] == NTH:
    _armed_paths.add(os.path.abspath(os.fsdecode(path)))
    return True
  return False


class _KillOnWrite:
  """A file object that dies half-way through its first write."""

  def __init__(self, f):
    self._f = f

  def write(self, data):
    self._f.write(data[:max(1, len(data) // 2)])
    self._f.flush()
    _die()

  def writelines(self, lines):
    self.write(''.join(lines) if isinstance(self._f, __import__('io').TextIOBase)
               else b''.join(lines))

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return self._f.__exit__(*exc)

  def __iter__(self):
    return iter(self._f)

  def __getattr__(self, name):
    return getattr(self._f, name)


def _writing_mode(mode: str) -> bool:
  return any(c in mode for c in 'wax+')


def patched_open(file, mode='r', *args, **kwargs):
  f = _open(file, mode, *args, **kwargs)
  if isinstance(file, (str, bytes, os.PathLike)) and _writing_mode(mode) and _matches(file):
    if _is_nth_opening(file) and WHEN == 'write':
      return _KillOnWrite(f)
  return f


def patched_os_open(path, flags, *args, **kwargs):
  fd = _os_open(path, flags, *args, **kwargs)
  if flags & (os.O_WRONLY | os.O_RDWR) and _matches(path):
    if _is_nth_opening(path) and WHEN == 'write':
      _armed_fds.add(fd)
  return fd


def patched_fdopen(fd, mode='r', *args, **kwargs):
  f = _fdopen(fd, mode, *args, **kwargs)
  if fd in _armed_fds:  # opened by os.open above: already counted
    return _KillOnWrite(f)
  return f


def patched_write(fd, data):
  if fd in _armed_fds:
    _write(fd, data[:max(1, len(data) // 2)])
    _die()
  return _write(fd, data)


def _patched_move(real):
  def move(src, dst, *args, **kwargs):
    if WHEN == 'rename' and os.path.abspath(os.fsdecode(src)) in _armed_paths:
      _die()
    return real(src, dst, *args, **kwargs)
  return move


builtins.open = patched_open
os.open = patched_os_open
os.fdopen = patched_fdopen
os.write = patched_write
os.replace = _patched_move(_replace)
os.rename = _patched_move(_rename)

if __name__ == '__main__':
  sys.path.insert(0, os.path.dirname(os.path.abspath(SCRIPT)))
  runpy.run_path(SCRIPT, run_name='__main__')
