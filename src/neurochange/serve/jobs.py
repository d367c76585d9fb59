"""Background runs of reviews: a queue, one run at a time, each its own ``neurochange review`` process.

A run is the command line a user would type (``python -m neurochange review SPEC --out
results/NAME --seed S``), so it writes the same folder, atomically: a run that fails, is
cancelled (SIGINT, as Ctrl-C; SIGKILL after a grace period) or crashes leaves no results folder,
and the hidden temporary folder it was writing is removed. Its output lines are kept as the log; progress
comes as plain lines (``NEUROCHANGE_PROGRESS=lines``), the last of which the Runs page shows.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

#: Seconds a cancelled run has to stop after SIGINT before it is killed.
GRACE_S = 10.0
#: Output lines kept per run.
LOG_LINES = 400


@dataclass
class Job:
    """One review run. ``state``: queued, running, done, failed or cancelled."""

    id: str
    spec: str  # project-relative
    out: str  # project-relative
    args: list[str]
    state: str = "queued"
    returncode: int | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    log: deque = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    process: subprocess.Popen | None = field(default=None, repr=False)
    cancel_asked: bool = False

    def view(self) -> dict:
        """What the API shows: everything but the process."""
        lines = list(self.log)
        return {"id": self.id, "spec": self.spec, "out": self.out, "state": self.state, "returncode": self.returncode,
                "submitted": self.submitted, "started": self.started, "finished": self.finished,
                "progress": lines[-1] if lines else "", "log": lines}


class JobQueue:
    """Runs submitted reviews one after another in a worker thread, inside project folder ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="neurochange-jobs", daemon=True)
        self._worker.start()

    def submit(self, spec: str, out: str, options: list[str]) -> Job:
        """Queue ``neurochange review spec --out out *options`` (paths relative to the project)."""
        with self._lock:
            job = Job(id=str(next(self._ids)), spec=spec, out=out,
                      args=[sys.executable, "-m", "neurochange", "review", spec, "--out", out, *options])
            self.jobs[job.id] = job
            self._queue.append(job)
            self._wake.notify()
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued run, or stop a running one (SIGINT, then SIGKILL after :data:`GRACE_S`)."""
        with self._lock:
            job = self.jobs[job_id]
            job.cancel_asked = True
            if job.state == "queued":
                self._queue.remove(job)
                job.state, job.finished = "cancelled", time.time()
            process = job.process if job.state == "running" else None
        if process is not None:
            _stop(process)
        return job

    def close(self) -> None:
        """Cancel everything and stop the worker."""
        for job_id in list(self.jobs):
            if self.jobs[job_id].state in ("queued", "running"):
                self.cancel(job_id)
        with self._lock:
            self._closed = True
            self._wake.notify()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
                job.state, job.started = "running", time.time()
                job.process = subprocess.Popen(
                    job.args, cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    errors="replace", start_new_session=True, env={**os.environ, "COLUMNS": "100", "TERM": "dumb",
                                                "NEUROCHANGE_PROGRESS": "lines"})
            for line in job.process.stdout:
                if line.strip():
                    job.log.append(line.rstrip())
            code = job.process.wait()
            with self._lock:
                job.returncode = code
                # a run that finished before the cancel reached it is done, with its folder
                job.state = "done" if code == 0 else ("cancelled" if job.cancel_asked else "failed")
                job.finished = time.time()
                job.process = None
            if job.state != "done":
                _remove_leftovers(self.root / job.out)


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _remove_leftovers(out: Path) -> None:
    """The hidden temporary folders a killed run was writing (``.NAME.tmp-*``)."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["Job", "JobQueue", "GRACE_S"]
