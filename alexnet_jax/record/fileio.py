"""Files the project writes, written so that a kill at any instant loses nothing.

Every record file is either replaced atomically (`write_atomic`: a temporary file in the same
folder, flushed and fsynced, then renamed over the old one, so a reader sees the old or the new
content, never a part) or appended to. Nothing here imports JAX or TensorFlow.

A write that fails (a full disk, a quota, a read-only or forbidden folder) raises `WriteFailed`,
which names the file; an append that fails leaves the file as it was. `writing(path)` turns the
same failures inside other libraries' writers (orbax, TensorFlow), which raise their own error
types and quote the system's message, into `WriteFailed` too, so that a command can end with
one line naming what could not be written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile


class WriteFailed(OSError):
  """`filename` (a file or folder) could not be written: `strerror` says why (e.g. a full disk).

  An OSError, so code that catches OSError still does; the original error is its __cause__.
  """

  def __init__(self, path: str, code: int | None, reason: str):
    super().__init__(code, reason, path)

  def __str__(self) -> str:
    return f'Could not write {self.filename}: {self.strerror}'

  @property
  def remedy(self) -> str:
    """What to do about it, as the start of a sentence."""
    if self.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
      return 'Free space there'
    if self.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
      return 'Make it writable'
    return 'Fix that'


# Failures of a write that a person can fix (free space, a quota, permissions, the device),
# as other libraries quote them: TensorStore (orbax) and TensorFlow raise their own error
# types whose message holds the system's text, e.g. '... No space left on device'.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                 errno.EPERM, errno.EIO)
# Those only a write can meet: for a block that also reads (its other failures are not the
# written file's).
WRITE_ONLY_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def quoted_write_failure(text: str) -> int | None:
  """The errno of `_WRITE_ERRNOS` whose system message `text` quotes, or None."""
  for code in _WRITE_ERRNOS:
    if os.strerror(code) in text:
      return code
  return None


def write_failure(error: BaseException) -> tuple[int | None, str] | None:
  """(errno, reason) if `error` is a failed write, else None: an OSError anywhere in its chain
  of causes, or an error of another library whose message quotes one of `_WRITE_ERRNOS`."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError):
      return error.errno, error.strerror or str(error)
    code = quoted_write_failure(str(error))
    if code is not None:
      return code, os.strerror(code)
    error = error.__cause__ or error.__context__
  return None


@contextlib.contextmanager
def writing(path, only: tuple[int, ...] | None = None):
  """Turns a failed write inside the block (see `write_failure`; with `only`, those of these
  errnos) into `WriteFailed(path)`; `path` may be a function that returns it (called only
  then)."""
  try:
    yield
  except WriteFailed:
    raise
  except Exception as e:  # pylint: disable=broad-except  (each library has its own types)
    failure = write_failure(e)
    if failure is None or (only is not None and failure[0] not in only):
      raise
    raise WriteFailed(path() if callable(path) else path, *failure) from e


def _fsync_folder(folder: str) -> None:
  """Makes a rename in `folder` durable (where the platform allows opening a folder)."""
  try:
    fd = os.open(folder, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_atomic(path: str, data: str | bytes) -> None:
  """Replaces `path` with `data`: readers (and a restart after a kill) see old or new, whole.

  The file gets the mode a plain `open(path, 'w')` would give it (0666 less the umask), not
  the owner-only mode of a temporary file, so results stay readable by the rest of a team.
  """
  folder = os.path.dirname(os.path.abspath(path))
  with writing(path):
    _replace(path, folder, data)
  _fsync_folder(folder)


def _replace(path: str, folder: str, data: str | bytes) -> None:
  fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp', dir=folder)
  try:
    os.fchmod(fd, 0o666 & ~_umask())
    with os.fdopen(fd, 'wb') as f:
      f.write(data.encode() if isinstance(data, str) else data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    try:
      os.unlink(tmp)
    except OSError:
      pass
    raise


def remove_temporaries(path: str) -> list[str]:
  """Removes what `write_atomic(path, ...)` left behind when killed (its temporary files).

  Call it only where no other process may be writing `path` at the same time.
  """
  folder, name = os.path.split(os.path.abspath(path))
  removed = []
  for entry in os.listdir(folder):
    if entry.startswith(f'.{name}.') and entry.endswith('.tmp'):
      try:
        os.unlink(os.path.join(folder, entry))
        removed.append(entry)
      except OSError:
        pass
  return removed


def write_json_atomic(path: str, value, **dump_kwargs) -> None:
  """`write_atomic` of `value` as JSON (with a final newline)."""
  write_atomic(path, json.dumps(value, **dump_kwargs) + '\n')


def append_line(path: str, line: str) -> None:
  """Appends `line` and a newline to `path` (made if missing), in one write to the file's end.

  A kill can cut only this line short; `read_jsonl` finds such a torn last line. A write that
  fails (e.g. a full disk after part of the line) is undone: the file is cut back to its old
  end (which needs no space), and WriteFailed names it.
  """
  data = (line.rstrip('\n') + '\n').encode()
  with writing(path):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      end = os.lseek(fd, 0, os.SEEK_END)
      try:
        while data:
          data = data[os.write(fd, data):]
      except OSError:
        os.ftruncate(fd, end)
        raise
    finally:
      os.close(fd)


class DamagedFile(ValueError):
  """A file the project wrote that cannot be read back; `problem` says what is wrong with it."""

  def __init__(self, path: str, problem: str):
    super().__init__(f'{path} {problem}')
    self.path = path
    self.problem = problem


def _json_problem(error: ValueError) -> str:
  if isinstance(error, json.JSONDecodeError):
    return f'is not JSON (line {error.lineno}, column {error.colno}: {error.msg})'
  return f'is not JSON ({error})'  # e.g. bytes that are not UTF-8


def read_json(path: str):
  """The JSON value in `path`; DamagedFile if it is not JSON (FileNotFoundError if missing)."""
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except IsADirectoryError:
    raise DamagedFile(path, 'is a folder, not a file') from None
  except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    raise DamagedFile(path, _json_problem(e)) from e


def _jsonl_lines(path: str) -> tuple[list[tuple[bytes, dict]], str | None, bool]:
  """([(line, row)], torn, whether the file ends with a newline or is empty); see `read_jsonl`."""
  with open(path, 'rb') as f:
    data = f.read()
  lines = data.split(b'\n')
  last = lines.pop()  # b'' when the file ends with a newline
  out = []
  for number, raw in enumerate(lines, 1):
    if not raw.strip():
      continue
    row = _json_object(raw)
    if row is None:
      raise DamagedFile(path, f'line {number} is not a JSON object: {_excerpt(raw)}')
    out.append((raw, row))
  torn = None
  if last.strip():
    row = _json_object(last)
    if row is None:
      torn = last.decode('utf-8', 'replace')
    else:
      out.append((last, row))
  return out, torn, not last


def read_jsonl(path: str) -> tuple[list[dict], str | None]:
  """(rows, torn) of a file of one JSON object per line, as `append_line` writes it.

  `torn` is the text of a last line that a kill cut short (no final newline and not a whole
  JSON object), else None; it is not among the rows. A whole object that only lost its newline
  is a row. Any other line that is not a JSON object is damage, not a kill: DamagedFile.
  """
  lines, torn, _ = _jsonl_lines(path)
  return [row for _, row in lines], torn


def rewrite_jsonl(path: str, keep) -> int:
  """Replaces `path` (`write_atomic`) by its rows for which `keep(row)` is true, each line as it
  was, without a torn last line and ending with a newline. Returns how many rows were dropped;
  writes nothing if the file is already so."""
  lines, torn, ends_with_newline = _jsonl_lines(path)
  kept = [raw for raw, row in lines if keep(row)]
  if len(kept) == len(lines) and torn is None and ends_with_newline:
    return 0
  write_atomic(path, b''.join(raw + b'\n' for raw in kept))
  return len(lines) - len(kept)


def _json_object(raw: bytes) -> dict | None:
  try:
    value = json.loads(raw.decode('utf-8'))
  except ValueError:
    return None
  return value if isinstance(value, dict) else None


def _excerpt(raw: bytes, limit: int = 60) -> str:
  text = raw.decode('utf-8', 'replace')
  return repr(text if len(text) <= limit else text[:limit] + '...')
