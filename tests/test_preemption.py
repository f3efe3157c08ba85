"""biojax.preemption: SIGTERM sets the flag inside the block, the previous handler comes
back after it, and ETAs read H:MM:SS."""

import os
import signal
import threading
import time

from biojax import preemption


def test_sigterm_sets_the_flag_and_the_previous_handler_returns():
  calls = []
  previous = signal.signal(signal.SIGTERM, lambda *_: calls.append("outer"))
  try:
    handler = signal.getsignal(signal.SIGTERM)
    with preemption.Preemption() as p:
      assert not p.stop(0, 1) and not p.requested
      os.kill(os.getpid(), signal.SIGTERM)
      for _ in range(100):  # the handler runs in the main thread at the next bytecode
        if p.requested:
          break
        time.sleep(0.01)
      assert p.stop(1, 1) and p.requested
      assert calls == []  # the flag, not the outer handler
    assert signal.getsignal(signal.SIGTERM) is handler
  finally:
    signal.signal(signal.SIGTERM, previous)


def test_outside_the_main_thread_no_handler_is_installed():
  before = signal.getsignal(signal.SIGTERM)
  seen = []

  def body():
    with preemption.Preemption() as p:
      seen.append((signal.getsignal(signal.SIGTERM), p.stop(0, 1)))

  thread = threading.Thread(target=body)
  thread.start()
  thread.join()
  assert seen == [(before, False)]


def test_format_eta():
  assert preemption.format_eta(0) == "0:00:00"
  assert preemption.format_eta(59.9) == "0:00:59"
  assert preemption.format_eta(3725) == "1:02:05"
  assert preemption.format_eta(90061) == "25:01:01"
  assert preemption.format_eta(-5) == "0:00:00"
