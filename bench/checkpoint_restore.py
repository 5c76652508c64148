"""Restore time of a checkpoint with and without its integrity check (checksums + finiteness).

  python bench/checkpoint_restore.py                 # the paper net: 60,965,224 parameters
  python bench/checkpoint_restore.py --width=0.25    # the quickstart's width

Saves one checkpoint of the train state (parameters and the optimizer's momentum, on a
two-device mesh, one column per device, as the trainer lays it out), then restores it `--rounds`
times each way, alternating the order: the orbax restore alone, and the same restore followed by
the check (`checkpoint.verify`: every array's checksum compared with the saved one, and the
whole state tested for finiteness). Prints the median of each, of the check alone, the ratio,
and the median of `Checkpoints.restore_latest` (what a resumed run calls: also reads the
checkpoint's metadata to compare shapes, as it did before the check existed). After the first
round the files are in the page cache: these are restore-from-memory times, the case where the
check's share is largest.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402

from alexnet_jax.record import checkpoint as checkpoint_lib  # noqa: E402
from alexnet_jax.train import steps as steps_lib  # noqa: E402
from configs.alexnet import get_config  # noqa: E402


def _timed(fn):
  start = time.perf_counter()
  out = fn()
  jax.block_until_ready(out)
  return time.perf_counter() - start, out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--width', type=float, default=1.0)
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--dir', default=None, help='where to write the checkpoint (a temp dir)')
  args = parser.parse_args()

  config = get_config()
  config.model.width = args.width
  steps = steps_lib.build(config)  # the trainer's layout; no data needed
  mesh, abstract = steps.mesh, steps.abstract_state
  state = steps.init_state()
  count = sum(x.size for x in jax.tree.leaves(state['params']))
  total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  print(f'mesh {dict(mesh.shape)}, {count:,} parameters, state {total / 2**20:.0f} MiB '
        f'in {len(jax.tree.leaves(state))} arrays')

  with tempfile.TemporaryDirectory(dir=args.dir) as directory:
    ckpt = checkpoint_lib.Checkpoints(directory, keep=1, keep_best=0, async_save=False)
    save_time, _ = _timed(lambda: ckpt.save(1, state, {'step': 1}))
    ckpt.wait()
    print(f'save (checksums included): {save_time:.2f} s')
    del state

    def plain():
      return ckpt.manager.restore(1, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))

    def checked():
      restored = plain()
      problem = checkpoint_lib.verify(restored['state'], restored['record']['checksums'])
      assert problem is None, problem
      return restored['state']

    def resume():
      return ckpt.restore_latest(abstract)[1]

    contenders = (('restore', lambda: plain()['state']), ('restore + check', checked),
                  ('restore_latest', resume))
    times = {name: [] for name, _ in contenders}
    times['check alone'] = []
    for r in range(args.rounds):
      for name, fn in (contenders if r % 2 == 0 else contenders[::-1]):
        elapsed, restored = _timed(fn)
        times[name].append(elapsed)
      elapsed, _ = _timed(lambda: checkpoint_lib.inspect_state(restored))
      times['check alone'].append(elapsed)
      del restored
    ckpt.close()

  load = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
  medians = {k: statistics.median(v) for k, v in times.items()}
  for name, values in times.items():
    print(f'{name:16s} median {medians[name]:.3f} s   ' + ' '.join(f'{v:.3f}' for v in values))
  print(f'restore with check / without: {medians["restore + check"] / medians["restore"]:.3f}')
  print(f'load: {load}')


if __name__ == '__main__':
  main()
