"""A disk that fills during training: one line, nothing damaged, and the rerun resumes exactly.

The workdir is a small disk of its own (a tmpfs, tests/disk_testlib.py; skipped where
mounting is not permitted: tests/record/test_full_disk.py injects the same failures at each
writer). Once checkpoint 4 is committed and the (asynchronous) save of step 6 has begun, a file
takes all the space left: that save fails, and whichever write shows it first (the save's
threads, metrics.jsonl, the TensorBoard events) stops the run.
"""

import errno
import os
import re

from tests import disk_testlib
from tests.train_testlib import (losses, main_args, resumed_step, run_main, start_main,
                                 wait_for, wait_for_checkpoint)


def test_a_full_disk_is_one_line_and_the_rerun_resumes_exactly(reference_run, tiny_data,
                                                                tmp_path):
  reference, _ = reference_run
  with disk_testlib.small_disk(tmp_path / 'disk', '40m') as disk:
    workdir = os.path.join(disk, 'run')
    checkpoints = os.path.join(workdir, 'checkpoints')
    process = start_main(main_args(tiny_data, workdir))
    wait_for_checkpoint(workdir, 4, process)
    wait_for(lambda: [n for n in os.listdir(checkpoints) if n.startswith('6.')], process,
             'the save of step 6 started')
    disk_testlib.fill(disk)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 1, out[-2000:] + err[-3000:]
    assert 'Traceback' not in out + err, err[-3000:]
    line = re.fullmatch(
        rf'Could not write ({re.escape(workdir)}/\S+): {os.strerror(errno.ENOSPC)}\. Nothing '
        r'written before is damaged; the last good checkpoint is step (\d+) '
        rf'\({re.escape(checkpoints)}\)\. Free space there, then run the same command to '
        r'resume from it\.', err.splitlines()[-1])
    assert line, err[-3000:]
    saved = int(line.group(2))
    assert saved >= 4 and os.path.isdir(os.path.join(checkpoints, str(saved)))

    disk_testlib.free(disk)
    result = run_main(main_args(tiny_data, workdir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert resumed_step(result.stdout) == saved
    assert losses(workdir) == losses(reference)
    assert not [n for n in os.listdir(checkpoints) if 'tmp' in n]  # the failed save's is gone
