"""Ctrl-C and SIGTERM during training: save, say so in one line, exit; Ctrl-C twice: exit now.

The first SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption) only sets a flag. The training
loop looks at it at each step boundary (and once before its first step); there it saves the
step it has reached, prints one line ('Interrupted: saved step N to DIR; ...') and exits with
128 + the signal's number (130 for SIGINT, 143 for SIGTERM), so the caller (a shell's `&&`, a
scheduler) sees that the run stopped early. Running the same command resumes exactly, as after
any save. A second SIGINT exits at once, with one line naming the last checkpoint: the steps
after it are lost, and nothing written is damaged (every file is written atomically or
appended to, and orbax renames a checkpoint into place only when it is complete: the same
guarantee as for kill -9). A second SIGTERM is ignored: the save it asked for is under way.

Why a flag, installed when the command starts (commands.run), rather than KeyboardInterrupt:
Python raises KeyboardInterrupt wherever the main thread happens to be, e.g. inside
TensorFlow building the evaluation pipeline or inside orbax starting a save, where nothing can
save the state and the interrupted library may be left half-way. A flag is read only where the
loop is between steps and the state is whole. So a signal during start-up (imports, the data
check, restoring the checkpoint) ends the run before its first step, with nothing new to save;
one during the first step's compilation, an evaluation or a save is acted on right after it:
the step is finished, the evaluation logged and the save done, so the saved step resumes like
an uninterrupted run (an interrupted evaluation would have to be redone, and its step could not
be saved). Those waits are seconds to minutes at the paper's scale; the second Ctrl-C is for
not waiting.

The second Ctrl-C must work while the main thread is busy in compiled code (XLA compiling, a
TensorFlow call), where Python runs no signal handler until the call returns. So the C-level
handler also writes the signal's number to a socket (`signal.set_wakeup_fd`), and a watcher
thread acts on it: the first sets the flag, the second prints the line and ends the process
(`os._exit`, as a kill would). Where that cannot be set up (another wakeup fd is in use), the
Python handler counts the signals instead.

Other commands (--mode=eval, predict, figures, the data commands) write nothing that must be
saved: they catch KeyboardInterrupt at their entry and end with one line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading

from alexnet_jax import parallel
from alexnet_jax.record import checkpoint as checkpoint_lib

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_STOP_WATCHING = 0  # not a signal number: tells the watcher thread to end


class Interrupts:
  """While entered (in the main thread): SIGINT and SIGTERM set `received`; see the module."""

  def __init__(self, checkpoints: str | None = None):
    self.checkpoints = checkpoints  # the run's checkpoint folder, for the lines
    self.received: int | None = None  # the first signal's number
    self._previous = {}
    self._wakeup = None  # (reader, writer) sockets of the watcher thread
    self._watcher = None

  @property
  def requested(self) -> bool:
    return self.received is not None

  def __enter__(self):
    global _active
    if threading.current_thread() is not threading.main_thread():
      return self  # signals reach the main thread only (e.g. a notebook worker): no handler
    self._start_watcher()
    self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
    _active = self
    return self

  def __exit__(self, *exc):
    global _active
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    if self._watcher is not None:
      signal.set_wakeup_fd(-1)
      reader, writer = self._wakeup
      writer.send(bytes([_STOP_WATCHING]))
      self._watcher.join()
      reader.close()
      writer.close()
    if _active is self:
      _active = None

  def _start_watcher(self) -> None:
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    if previous != -1:  # someone else's (e.g. an event loop): leave it to them
      signal.set_wakeup_fd(previous)
      reader.close()
      writer.close()
      return
    self._wakeup = (reader, writer)
    self._watcher = threading.Thread(target=self._watch, args=(reader,), daemon=True,
                                     name='interrupts')
    self._watcher.start()

  def _watch(self, reader: socket.socket) -> None:
    while True:
      received = reader.recv(64)
      if not received:  # closed
        return
      for signum in received:
        if signum == _STOP_WATCHING:
          return
        if signum in SIGNALS:
          self._receive(signum)

  def _handle(self, signum, frame) -> None:
    del frame
    if self._watcher is None:  # else the watcher thread has seen this signal
      self._receive(signum)

  def _receive(self, signum: int) -> None:
    if self.received is None:
      self.received = signum
    elif signum == signal.SIGINT:
      self._exit_now()

  def _exit_now(self) -> None:
    # Not waiting for a save in flight: that is what a second Ctrl-C is for.
    step = (checkpoint_lib.last_committed(self.checkpoints, wait=False) if self.checkpoints
            else None)
    if step is None:
      said = 'no checkpoint had been saved; the same command starts the run again.'
    else:
      said = (f'nothing after the last checkpoint (step {step}) was saved; run the same '
              'command to resume from it.')
    try:
      sys.stdout.flush()  # os._exit would drop what is buffered
    except (OSError, ValueError):
      pass
    start = '\n' if sys.stderr.isatty() else ''  # after the ^C and the progress bar
    print(f'{start}Interrupted again: stopped at once; {said}', file=sys.stderr, flush=True)
    os._exit(128 + signal.SIGINT)  # pylint: disable=protected-access

  def _signal(self) -> int:
    # None here: another process received it (the processes agree to stop at a logging step);
    # stopping all processes so is what a scheduler's preemption does.
    return self.received or signal.SIGTERM

  def _name(self) -> str:
    return 'Interrupted' if self._signal() == signal.SIGINT else signal.Signals(
        self._signal()).name

  def _exit(self, line: str):
    if parallel.is_main_process():
      print(line, flush=True)
    sys.exit(128 + self._signal())

  def exit_saved(self, step: int) -> None:
    """Ends the process once the loop has saved `step` for the signal received."""
    self._exit(f'{self._name()}: saved step {step} to {self.checkpoints}; run the same command '
               'to resume.')

  def exit_before_training(self) -> None:
    """Ends the process for a signal received before the first step (nothing new to save)."""
    step = checkpoint_lib.last_committed(self.checkpoints)
    kept = ('no checkpoint yet; run the same command to start' if step is None else
            f'the last checkpoint, step {step}, is kept; run the same command to resume')
    self._exit(f'{self._name()} before the first step: nothing new to save ({kept}).')

  def exit_finished(self, step: int) -> None:
    """Ends the process for a signal received after the last step: the run completed."""
    self._exit(f'{self._name()} after the last step: the run finished; its final evaluation '
               f'and step {step} are saved in {self.checkpoints}.')


_active: Interrupts | None = None


def _forget_wakeup_in_child() -> None:
  """A process forked from this one (with a Ctrl-C, the terminal signals it too) must not
  write its signals to this one's watcher: they would count as a second Ctrl-C here."""
  if _active is not None and _active._watcher is not None:  # pylint: disable=protected-access
    try:
      signal.set_wakeup_fd(-1)
    except ValueError:
      pass


os.register_at_fork(after_in_child=_forget_wakeup_in_child)


@contextlib.contextmanager
def watch(checkpoints: str | None = None):
  """The Interrupts in force (installed by the command), or new ones for this block."""
  if _active is not None:
    if checkpoints is not None:
      _active.checkpoints = checkpoints
    yield _active
    return
  with Interrupts(checkpoints) as interrupts:
    yield interrupts
