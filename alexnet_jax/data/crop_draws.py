"""The training crops' random numbers for a whole batch at once, in NumPy (no TensorFlow).

The crops of the raw-squares path must be exactly those of the JPEG path (image_ops.train_crop):
the same function of (seed, process, position in the stream), so that a run reads the same
examples whichever path it takes. train_crop draws them per example with TensorFlow's stateless
ops; here the same algorithm is re-done at batch level, so the host's work per batch is a fixed
number of vector operations over all its examples (about 150, whatever the batch size) instead
of a dozen TensorFlow ops per example, and the crop itself can be done on the device.

What TensorFlow does on the CPU for a seed (s0, s1) of int64 (algorithm "auto_select", which is
Philox4x32-10 there):
  * StatelessRandomGetKeyCounter (GenerateKey) scrambles the seed with one Philox block: counter
    (lo s0, hi s0, lo s1, hi s1) under the fixed key SEED_SCRAMBLE_KEY gives words m0..m3; the
    key is then (m0, m1) and the counter (0, 0, m2, m3).
  * An op fills its output in groups, one Philox block per group, group g from the counter
    advanced by g (added to its lowest word, carried upwards).
  * stateless_split(seed, 4) is uniform_full_int int64 of shape [4, 2]: block k gives new seed
    k as (w0 | w1 << 32, w2 | w3 << 32) (two int64 per block).
  * stateless_uniform int32 in [lo, hi) takes word 0 of block 0: lo + w0 % (hi - lo) (unsigned).
  * stateless_uniform float32 takes word 0 too: the float 1.m - 1 with m = its low 23 bits
    (then times maxval - minval = 1, plus 0: exact), so it is < 0.5 exactly when bit 22 of the
    word is clear.
tests/data/test_crop_draws.py checks every step against TensorFlow itself.
"""

from __future__ import annotations

import sys

import numpy as np

# Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"), with the
# constants TensorFlow uses (philox_random.h).
PHILOX_ROUNDS = 10
PHILOX_MULTIPLIERS = np.array([0xD2511F53, 0xCD9E8D57], np.uint64)  # of counter words 0 and 2
PHILOX_WEYL_INCREMENTS = (0x9E3779B9, 0xBB67AE85)  # added to key words 0 and 1 every round
# The fixed key under which GenerateKey scrambles a seed (stateless_random_ops.cc).
SEED_SCRAMBLE_KEY = np.array([0x3EC8F720, 0x02461E29], np.uint32)
# Round i's key is the key plus i increments, mod 2**32 (uint32 addition wraps).
_ROUND_KEY_STEPS = np.array([[i * w & 0xFFFFFFFF for w in PHILOX_WEYL_INCREMENTS]
                             for i in range(PHILOX_ROUNDS)], np.uint32)
# Where a uint64's low and high 32 bits lie when it is viewed as two uint32.
_LOW, _HIGH = (0, 1) if sys.byteorder == 'little' else (1, 0)
_MASK32 = np.uint64(0xFFFFFFFF)
_BIT22 = np.uint32(1 << 22)  # Uint32ToFloat(w) < 0.5 exactly when this bit of w is clear.

# train_crop splits its seed in four: seeds 0 and 1 give the crop's offsets, seed 2 the mirror.
_OFFSET_Y, _OFFSET_X, _FLIP = 0, 1, 2


def _philox(counter, key):
  """Philox4x32-10 of uint32 counter words [4, ..., B] under key words [2, ...] (broadcast to
  them): the four output words [4, ..., B]. The last axis is the batch's, never the lanes'.

  Lanes 0 and 2 are multiplied (`even`), lanes 1 and 3 are xored in (`odd`). A product is taken
  in uint64 (exact) and read back as its two uint32 halves, a view, so a round is three vector
  operations over the batch: a multiply and two xors.
  """
  extra = (1,) * (key.ndim - 1)
  keys = key + _ROUND_KEY_STEPS.reshape((PHILOX_ROUNDS, 2) + extra)
  multipliers = PHILOX_MULTIPLIERS.reshape((2,) + extra)
  even, odd = counter[0::2], counter[1::2]
  for round_key in keys:
    # Lane 0 takes lane 2's product and lane 2 lane 0's: (hi1 ^ c1 ^ k0, hi0 ^ c3 ^ k1) are the
    # next words 0 and 2, (lo1, lo0) the next words 1 and 3.
    halves = (even * multipliers).view(np.uint32)[::-1]
    even, odd = halves[..., _HIGH::2] ^ odd ^ round_key, halves[..., _LOW::2]
  return np.stack([even[0], odd[0], even[1], odd[1]])


def _seed_words(seed0, seed1):
  """The seed (s0, s1) as the four counter words GenerateKey starts from: lo s0, hi s0, lo s1,
  hi s1 (uint32 [4, B] from uint64 [B] holding the int64 seed parts' bits)."""
  return np.stack([seed0 & _MASK32, seed0 >> 32, seed1 & _MASK32, seed1 >> 32]).astype(np.uint32)


def _key_counter(words):
  """GenerateKey: the Philox (key [2, ..., B], counter [4, ..., B]) of seeds given as words."""
  mix = _philox(words, SEED_SCRAMBLE_KEY.reshape((2,) + (1,) * (words.ndim - 1)))
  zeros = np.zeros_like(mix[:2])
  return mix[:2], np.concatenate([zeros, mix[2:]])


def _split(words, indices):
  """Seeds `indices` of stateless_split(seed, n), as words [4, len(indices), B]: block k of
  the seed's stream. Block k is counter word 0 + k: that word is 0 after GenerateKey, so no
  carry. Each new seed's int64 pair (w0 | w1 << 32, w2 | w3 << 32) would be cut back into these
  same four words by its own GenerateKey, so the words are passed on as they are."""
  key, counter = _key_counter(words)
  extra = (1,) * (words.ndim - 1)
  blocks = np.asarray(indices, np.uint32).reshape((len(indices),) + extra)
  counters = np.broadcast_to(counter[:, None], (4, len(indices)) + words.shape[1:]).copy()
  counters[0] = blocks
  return _philox(counters, key[:, None])


def _first_word(words):
  """Word 0 of the first block that a stateless op keyed by these seeds draws."""
  key, counter = _key_counter(words)
  return _philox(counter, key)[0]


def _as_uint64(x):
  """The int64 bits of `x` (an int, or an int64/uint64 array) as uint64, as TensorFlow reads
  an int64 seed (static_cast<uint64>)."""
  a = np.asarray(x)
  return a if a.dtype == np.uint64 else a.astype(np.int64).view(np.uint64)


def train_crop_draws(base_seed, positions, resize_size: int, image_size: int,
                     random_crop: bool, mirror: bool) -> np.ndarray:
  """int32 [B, 3]: (offset_y, offset_x, flip) of each example, exactly what image_ops.train_crop
  draws for seed [base_seed, position].

  `positions` int64 [B]; `base_seed` an int or an array broadcastable to [B]. Without
  random_crop the offsets are the centre's, (R - S) // 2; without mirror flip is 0. Only the
  seeds that train_crop uses are drawn.
  """
  seed0, seed1 = np.broadcast_arrays(_as_uint64(base_seed), _as_uint64(positions))
  out = np.zeros((seed1.size, 3), np.int32)
  out[:, :2] = (resize_size - image_size) // 2
  used = ([_OFFSET_Y, _OFFSET_X] if random_crop else []) + ([_FLIP] if mirror else [])
  if used:
    seeds = _split(_seed_words(seed0.reshape(-1), seed1.reshape(-1)), used)
    words = dict(zip(used, _first_word(seeds)))
    if random_crop:
      span = np.uint32(resize_size - image_size + 1)
      out[:, 0] = words[_OFFSET_Y] % span
      out[:, 1] = words[_OFFSET_X] % span
    if mirror:
      out[:, 2] = (words[_FLIP] & _BIT22) == 0
  return out.reshape(seed1.shape + (3,))
