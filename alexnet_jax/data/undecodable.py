"""Images nothing can be decoded from, reported by the project itself, once each.

The report goes to stderr whatever the log level (TensorFlow's own warning says neither the
file nor its position, and is hidden by the TF_CPP_MIN_LOG_LEVEL this package sets). Each
(dataset, split, position) is reported once per process.
"""

from __future__ import annotations

import sys

_REPORTED: set[tuple[str, str, int]] = set()


def describe(split: str, position: int, name: str) -> str:
  return f'split {split!r}, position {position}' + (f', file {name}' if name else '')


def report(dataset: str, split: str, position: int, name: str, what: str, stream=None) -> bool:
  """Prints 'warning: undecodable image in <dataset>: split ..., position ..., file ...;
  <what>' unless this image was reported before; returns whether it printed."""
  key = (dataset, split, int(position))
  if key in _REPORTED:
    return False
  _REPORTED.add(key)
  print(f'warning: undecodable image in {dataset}: {describe(split, position, name)}; {what}',
        file=stream or sys.stderr, flush=True)
  return True
