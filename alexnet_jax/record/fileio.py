"""Files the project writes, written so that a kill at any instant loses nothing.

Every record file is either replaced atomically (`write_atomic`: a temporary file in the same
folder, flushed and fsynced, then renamed over the old one, so a reader sees the old or the new
content, never a part) or appended to. Nothing here imports JAX or TensorFlow.
"""

from __future__ import annotations

import json
import os
import tempfile


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
  _fsync_folder(folder)


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

  A kill can cut only this line short; `read_jsonl` finds such a torn last line.
  """
  data = (line.rstrip('\n') + '\n').encode()
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    while data:
      data = data[os.write(fd, data):]
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
