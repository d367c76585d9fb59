"""`neurochange serve` on the whole corpus (Neurosynth + NeuroQuery, 19,148 studies): start-up and request latency.

    .venv/bin/python benchmarks/serve_latency.py --db CORPUS.duckdb [--repeats 5]

Build the corpus first (``NEUROCHANGE_DATA_MIRROR=../shared/data neurochange corpus build --db CORPUS.duckdb``
then ``neurochange corpus tag --db CORPUS.duckdb``). Starts ``neurochange serve`` in a fresh process on an empty
project folder and prints, as one JSON object: seconds from the process start to the first answer of
``/api/info`` and of the Screening page; then the median and maximum of ``--repeats`` requests of each kind:
a page of 50 candidates of the whole corpus at offsets 0, 1,000 and 19,000 and of a tag query, one study's
tables, the PRISMA flow (with a curation table of 100 rows), and a curation edit. No other tool serves this, so
there is no ratio; the machine is shared: compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_answer(url: str, started: float, limit: float = 60) -> float:
    while time.perf_counter() - started < limit:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            time.sleep(0.02)
    raise RuntimeError(f"no answer from {url} in {limit} s")


def _timed(client: httpx.Client, method: str, url: str, repeats: int, **kwargs) -> dict:
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        response = client.request(method, url, **kwargs)
        seconds.append(time.perf_counter() - t)
        response.raise_for_status()
    return {"median_s": round(statistics.median(seconds), 4), "max_s": round(max(seconds), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    project = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    port = _port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "neurochange", "serve", str(project), "--db", str(args.db),
                               "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        out = {"corpus": str(args.db), "startup_s": {"api_info": round(_first_answer(f"{base}/api/info", started), 3)}}
        out["startup_s"]["screening_page"] = round(_first_answer(f"{base}/screening", started), 3)
        with httpx.Client(base_url=base, timeout=60) as client:
            total = client.get("/api/candidates", params={"limit": 1}).json()["total"]
            out["candidates_total"] = total
            studies = client.get("/api/candidates", params={"limit": 100}).json()["studies"]
            rows = [{"study_id": s["study_id"], "field": "include", "value": "no"} for s in studies] + \
                [{"study_id": s["study_id"], "field": "reason", "value": "not_treatment"} for s in studies]
            t = time.perf_counter()
            client.post("/api/curation", json={"edits": rows[:200]}).raise_for_status()
            out["first_edit_s (200 values, builds the id index)"] = round(time.perf_counter() - t, 3)
            requests = {
                "candidates offset 0": ("GET", "/api/candidates", {"params": {"offset": 0, "limit": 50}}),
                "candidates offset 1,000": ("GET", "/api/candidates", {"params": {"offset": 1000, "limit": 50}}),
                "candidates offset 19,000": ("GET", "/api/candidates", {"params": {"offset": 19000, "limit": 50}}),
                "candidates modality=psychotherapy": ("GET", "/api/candidates",
                                                      {"params": {"query": "modality=psychotherapy", "limit": 50}}),
                "study 18550030 (tables, foci)": ("GET", "/api/studies/18550030", {}),
                "prisma (whole corpus, per table)": ("GET", "/api/prisma", {}),
                "edit one value": ("POST", "/api/curation", {"json": {"edits": [
                    {"study_id": "18550030", "field": "n", "value": "16"}]}}),
            }
            out["requests"] = {name: _timed(client, method, url, args.repeats, **kw)
                               for name, (method, url, kw) in requests.items()}
    finally:
        server.terminate()
        server.wait(30)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
