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


def write_atomic(path: str, data: str | bytes) -> None:
  """Replaces `path` with `data`: readers (and a restart after a kill) see old or new, whole."""
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp', dir=folder)
  try:
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


def write_json_atomic(path: str, value, **dump_kwargs) -> None:
  """`write_atomic` of `value` as JSON (with a final newline)."""
  write_atomic(path, json.dumps(value, **dump_kwargs) + '\n')
