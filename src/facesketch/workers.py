"""Worker processes that die with their parent.

A pool's workers block on their task queue; if the parent is killed (SIGKILL, OOM killer, a
cluster's time limit) nothing tells them, and they would sit there forever, orphaned. Each
worker watches its parent's PID and exits as soon as it changes.
"""

from __future__ import annotations

import os
import threading
import time

POLL_S = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Pool initializer: exit this worker when ``parent_pid`` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(POLL_S)
        os._exit(1)  # no clean-up: the parent that would collect our results is gone

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
