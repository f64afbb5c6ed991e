"""Worker processes that died: their live gauge files are forgotten at each scrape."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["forget_dead_processes"]


def forget_dead_processes(directory: str) -> None:
    """Delete the ``live*`` gauge files of workers that have died (a killed or restarted one).

    What ``prometheus_client.multiprocess.mark_process_dead`` does, for every dead pid: uvicorn
    has no hook on a worker's death, so each scrape looks. Without it a worker killed with
    requests in flight would leave ``xent_scoring_in_flight`` above zero for good. Counter,
    histogram and ``sum`` gauge files stay: what a dead worker counted still counts.
    """
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """True unless ``pid`` surely is no process (never guesses "dead" off POSIX)."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True
