"""Which examples a process reads, and in what order: pure functions of (config, seed, step).

Each process owns a fixed contiguous share of the split, cut into chunks (file positions);
every epoch permutes the chunks with a seed of (seed, process, epoch) and reads `window_chunks`
of them at a time, shuffled with a seeded buffer that restarts at every window. A run resumed
at step s computes which window and which element of it step s starts at, and reads only that
window to get there, never an epoch. No TensorFlow here.
"""

from __future__ import annotations

import numpy as np

from alexnet_jax.data import sources


def local_batch(global_batch_size: int, process_count: int) -> int:
  if global_batch_size % process_count:
    raise ValueError(f'Global batch {global_batch_size} is not divisible by {process_count} '
                     'processes.')
  return global_batch_size // process_count


def share(segments, process_index: int, process_count: int):
  """Process `process_index`'s contiguous share; shares are disjoint and cover the split."""
  n = sources.num_examples(segments)
  return sources.cut(segments, process_index * n // process_count,
                     (process_index + 1) * n // process_count)


def largest_share(n: int, process_count: int) -> int:
  return max((i + 1) * n // process_count - i * n // process_count
             for i in range(process_count))


def seed_int(*parts: int) -> int:
  """A non-negative int64 derived from `parts` (stable across runs and machines)."""
  return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]
             >> np.uint64(1))


def window_plans(chunks, window_chunks: int, seed: int, process_index: int, start: int):
  """Yields (chunk ids, shuffle seed, elements to skip, stream position of the first element
  and of the end) for every window from the one holding stream position `start` on, forever."""
  counts = np.array([c.count for c in chunks], np.int64)
  n = int(counts.sum())
  epoch, offset = divmod(start, n)
  while True:
    order = np.random.default_rng(seed_int(seed, process_index, epoch)).permutation(len(chunks))
    position = epoch * n
    for w, lo in enumerate(range(0, len(order), window_chunks)):
      ids = order[lo:lo + window_chunks]
      size = int(counts[ids].sum())
      if offset >= size:
        offset -= size
      else:
        yield (ids.astype(np.int64), seed_int(seed, process_index, epoch, w), offset,
               position + offset, position + size)
        offset = 0
      position += size
    epoch += 1
