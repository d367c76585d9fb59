"""A small tagged corpus, a project folder and a running `neurochange serve` for the web app's tests."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from corpus_helpers import build_corpus, make_subset

from neurochange.corpus.store import Corpus
from neurochange.corpus.tagging.classify import tag_corpus

#: Treatment studies (psychotherapy, rTMS, VNS, ECT and SSRI studies of depression) kept in the small corpus.
TREATMENT_IDS = ("18550030", "19726030", "20421135", "20934190", "12165364", "16043331", "18559283", "17585888",
                 "26247910", "29747140", "22772359")


def small_corpus(mirror: Path, folder: Path) -> Path:
    """A tagged corpus of the first 40 studies of each database plus :data:`TREATMENT_IDS`."""
    subset = make_subset(mirror, folder / "subset", first=40, extra_ids=TREATMENT_IDS)
    path = build_corpus(subset, folder / "corpus.duckdb")
    with Corpus(path) as corpus:
        tag_corpus(corpus)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``create_app(project, db)`` served by uvicorn in a thread on 127.0.0.1 (``url``); ``stop()`` ends it."""

    def __init__(self, project: Path, db: Path):
        import uvicorn

        from neurochange.serve.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(project, db), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("the test server did not start in 20 s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)


def wait_for(predicate, timeout: float = 120, step: float = 0.2, sleep=time.sleep):
    """Poll ``predicate()`` until it returns a true value (returned) or ``timeout`` seconds pass (AssertionError).

    ``sleep(seconds)``: how to wait between polls; a Playwright page's own wait in browser tests, since the sync
    API routes the page's requests only while a Playwright call runs.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        sleep(step)
    raise AssertionError(f"not done within {timeout} s")
