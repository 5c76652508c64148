"""A small disk that the tests can fill: a tmpfs mounted on a folder (which needs root).

Where mounting is not permitted, `small_disk` skips the test that asked for it; the tests of
alexnet_jax/record that need no mount inject the same failures at the write instead.
"""

import contextlib
import errno
import os
import subprocess

import pytest

FILLER = 'filler'


@contextlib.contextmanager
def small_disk(folder, size: str = '2m'):
  """`folder` (made if missing) as a tmpfs of `size`, unmounted afterwards."""
  os.makedirs(folder, exist_ok=True)
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(folder)],
                           capture_output=True, text=True)
  if mounted.returncode:
    pytest.skip(f'mounting a tmpfs is not permitted here ({mounted.stderr.strip()}); '
                'tests/record/test_full_disk.py injects the failures at the write instead')
  try:
    yield str(folder)
  finally:
    subprocess.run(['umount', '-l', str(folder)], capture_output=True)


def fill(folder) -> int:
  """Writes a file that takes all the space left on `folder`'s disk; returns its size."""
  written = 0
  block = b'\0' * 4096
  with open(os.path.join(folder, FILLER), 'wb', buffering=0) as f:
    while True:
      try:
        written += f.write(block)
      except OSError as e:
        if e.errno != errno.ENOSPC:
          raise
        return written


def free(folder) -> None:
  os.remove(os.path.join(folder, FILLER))
