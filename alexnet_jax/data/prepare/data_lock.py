"""The data dir's lock: whoever makes data holds it, so that data is made once, whoever asks.

Every process that runs `prepare` (each process of `srun -n 8 python main.py ...`, the jobs of a
SLURM array, two shells) takes an exclusive lock on one file in data.data_dir for the whole
preparation; the others wait for it (each says so once), then find everything made and only
check it. The lock is the kernel's (flock), so it is released however its holder ends, a kill
included, and it is seen by every process that opens the same file: on one host, and across
hosts on a shared file system that supports it (NFS does; Lustre when mounted with flock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

# In data.data_dir; anything that checks what the data dir holds leaves it out.
LOCK_FILE = '.alexnet_jax_prepare.lock'


@contextlib.contextmanager
def held(data_dir: str, log=print) -> Iterator[None]:
  """Holds the exclusive lock of `data_dir` (made if missing) for the block, after waiting for
  whoever holds it (saying so through `log`)."""
  os.makedirs(data_dir, exist_ok=True)
  with open(os.path.join(data_dir, LOCK_FILE), 'a') as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      log(f'waiting for another process making the data in {data_dir}')
      fcntl.flock(lock, fcntl.LOCK_EX)
    yield  # closing the file releases the lock


def taken_before(data_dir: str) -> bool:
  """Whether a process has taken the lock of `data_dir` (now or earlier): its file is there.
  It is made before anything else a preparation writes there."""
  return os.path.exists(os.path.join(data_dir, LOCK_FILE))
