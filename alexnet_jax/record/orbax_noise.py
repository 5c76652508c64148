"""What orbax and tensorstore would print around a save, kept off the terminal.

`install()` (called when record/checkpoint.py is imported) adds logging filters and hooks that
turn this noise into log records or nothing, so that a run prints its progress lines and, if a
save fails, the one line of fileio.WriteFailed (`--verbosity=1` shows the tracebacks):

- periodic saves carry no validation error by design (only evaluated ones do); orbax warns about
  each of them;
- a save that fails to write (a full disk) is logged with its traceback by orbax, once per
  thread of the save, and by asyncio, once per task of it;
- that failure ends orbax's event loop while tensorstore still has writes of the save in
  flight; each that finishes afterwards finds no loop to report to and prints 'Event loop is
  closed' with a traceback, through sys.excepthook or sys.unraisablehook.
"""

from __future__ import annotations

import logging
import sys

from alexnet_jax.record import fileio

log = logging.getLogger(__name__)
_installed = False


class _QuietPeriodicSaves(logging.Filter):

  def filter(self, record):
    return 'did not provide metrics' not in str(record.msg)


class _QuietWriteFailures(logging.Filter):

  def filter(self, record):
    if record.name != 'asyncio' and 'orbax' not in record.pathname:
      return True
    error = record.exc_info[1] if record.exc_info else None
    return not ((error is not None and fileio.write_failure(error))
                or fileio.quoted_write_failure(record.getMessage()))


def _closed_loop(error: BaseException | None) -> bool:
  return isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'


def _quiet_orphaned_writes(excepthook, unraisablehook):
  """(sys.excepthook, sys.unraisablehook) that log, not print, a closed loop's error."""

  def except_hook(kind, value, traceback):
    if _closed_loop(value):
      log.info('A write of a failed save finished after it: %s', value)
    else:
      excepthook(kind, value, traceback)

  def unraisable_hook(unraisable):
    if _closed_loop(unraisable.exc_value):
      log.info('A write of a failed save finished after it: %s', unraisable.exc_value)
    else:
      unraisablehook(unraisable)

  return except_hook, unraisable_hook


def install() -> None:
  """Adds the filters and hooks (once per process)."""
  global _installed
  if _installed:
    return
  _installed = True
  logging.getLogger('absl').addFilter(_QuietPeriodicSaves())
  for name in ('absl', 'asyncio'):
    logging.getLogger(name).addFilter(_QuietWriteFailures())
  sys.excepthook, sys.unraisablehook = _quiet_orphaned_writes(sys.excepthook, sys.unraisablehook)
