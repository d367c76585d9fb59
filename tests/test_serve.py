"""`neurochange serve`'s JSON API on a small real corpus: every endpoint with good and bad input, a curated
signed review end to end through the API, fuzzing, and a server killed in the middle of edits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_helpers import TREATMENT_IDS, free_port, small_corpus, wait_for

from neurochange.corpus.curation import read_curation
from neurochange.corpus.select import select
from neurochange.corpus.store import Corpus
from neurochange.serve import api
from neurochange.serve.app import create_app
from neurochange.sources.io import read_studyset

STUDY = "18550030"


@pytest.fixture(scope="module")
def db(data_mirror, tmp_path_factory):
    return small_corpus(data_mirror, tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture
def client(project, db):
    with TestClient(create_app(project, db), raise_server_exceptions=False) as c:
        yield c


def _edit(client, **edit):
    return client.post("/api/curation", json={"edits": [edit]})


# ----------------------------------------------------------------------------- reading
def test_info_and_candidates_page_through_the_corpus(client, db):
    info = client.get("/api/info").json()
    assert info["sources"] == ["neurosynth", "neuroquery"] and info["curation"]["version"] == ""
    with Corpus(db, read_only=True) as corpus:
        expected = corpus.select_ids("").drop_duplicates("study_id")["study_id"].tolist()
    seen = []
    for offset in range(0, len(expected), 37):
        page = client.get("/api/candidates", params={"offset": offset, "limit": 37}).json()
        assert page["total"] == len(expected) and len(page["studies"]) <= 37
        seen += [s["study_id"] for s in page["studies"]]
    assert seen == expected
    found = client.get("/api/candidates", params={"query": "modality=psychotherapy", "text": "depression"}).json()
    assert found["total"] >= 1
    for s in found["studies"]:
        assert s["modality"] == "psychotherapy" and "depression" in s["title"].lower()
        assert s["evidence"]["modality"].startswith("modality=psychotherapy")
        assert s["links"]["pubmed"].endswith(f"/{s['study_id']}/")


@pytest.mark.parametrize("params, status, words", [
    ({"query": "modaliti=cbt"}, 400, "unknown field 'modaliti'"),
    ({"query": "modality=talk"}, 400, "valid values"),
    ({"limit": 1000}, 422, "limit"),
    ({"offset": -1}, 422, "offset"),
])
def test_candidates_refuse_bad_requests_in_one_line(client, params, status, words):
    response = client.get("/api/candidates", params=params)
    assert response.status_code == status and words in response.json()["error"]
    assert "\n" not in response.json()["error"]


def test_a_study_lists_its_tables_with_numbered_foci(client, db):
    study = client.get(f"/api/studies/{STUDY}").json()
    with Corpus(db, read_only=True) as corpus:
        tables = corpus.query(f"study={STUDY}", experiments="table")
    assert [e["experiment_id"] for e in study["experiments"]] == tables.experiments["experiment_id"].tolist()
    for ex in study["experiments"]:
        assert [f["focus"] for f in ex["foci"]] == list(range(1, len(ex["foci"]) + 1))
        assert ex["direction"] == "unknown" and ex["curation"] == {}
    pooled = client.get(f"/api/studies/{STUDY}", params={"experiments": "study"}).json()
    assert [e["experiment_id"] for e in pooled["experiments"]] == [f"{STUDY}-neurosynth"]
    assert client.get("/api/studies/99999999").status_code == 404
    assert client.get(f"/api/studies/{STUDY}", params={"experiments": "contrast"}).status_code == 422


# ----------------------------------------------------------------------------- curation edits
def test_edits_are_written_at_once_and_conflicts_are_refused(client, project):
    table = client.get(f"/api/studies/{STUDY}").json()["experiments"][0]["experiment_id"]
    r = client.post("/api/curation", json={"edits": [
        {"experiment_id": table, "field": "include", "value": "yes", "expected": ""},
        {"experiment_id": table, "field": "direction", "value": "decrease", "expected": ""},
        {"experiment_id": table, "field": "n", "value": "16"}]})
    assert r.status_code == 200
    cur = read_curation(project / "curation.tsv")
    assert r.json()["version"] == cur.sha256
    assert dict(zip(cur.rows["field"], cur.rows["value"])) == {"include": "yes", "direction": "decrease", "n": 16}
    before = (project / "curation.tsv").read_bytes()
    # a second tab still showing the empty field
    conflict = _edit(client, experiment_id=table, field="direction", value="increase", expected="")
    assert conflict.status_code == 409 and "is now 'decrease'" in conflict.json()["error"]
    assert (project / "curation.tsv").read_bytes() == before
    # the study page shows what the table says
    shown = client.get(f"/api/studies/{STUDY}").json()["experiments"][0]["curation"]
    assert (shown["include"], shown["direction"], shown["n"]) == ("yes", "decrease", "16")


@pytest.mark.parametrize("edit, status, words", [
    ({"study_id": STUDY, "field": "include", "value": "no"}, 400, "line 2, field reason: study '18550030' is excluded "
                                                                  "without a reason"),
    ({"study_id": STUDY, "field": "direction", "value": "up"}, 400, "field direction: 'up' is not a valid direction"),
    ({"study_id": STUDY, "field": "n", "value": "-3"}, 400, "positive whole number"),
    ({"study_id": "99999999", "field": "n", "value": "3"}, 400, "study '99999999' is not in the corpus"),
    ({"experiment_id": "1-nowhere", "field": "n", "value": "3"}, 400, "experiment '1-nowhere' is not in the corpus"),
    ({"study_id": STUDY, "field": "study_id", "value": "x"}, 400, "cannot set 'study_id'"),
    ({"study_id": STUDY, "field": "colour", "value": "x"}, 400, "cannot set 'colour'"),
    ({"field": "n", "value": "3"}, 400, "an edit names a study_id"),
    ({"study_id": STUDY, "field": "n", "value": "3", "surprise": 1}, 422, "surprise: Extra inputs"),
])
def test_bad_edits_leave_the_table_untouched(client, project, edit, status, words):
    assert _edit(client, study_id=STUDY, field="modality", value="psychotherapy").status_code == 200
    before = (project / "curation.tsv").read_bytes()
    response = client.post("/api/curation", json={"edits": [edit]})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    if status == 400 and "line" in words:
        assert response.json()["error"].startswith(str(project / "curation.tsv"))
    assert (project / "curation.tsv").read_bytes() == before
    assert not list(project.glob(".curation.tsv.tmp-*"))


def test_focus_flags_record_their_coordinates(client, project):
    ex = client.get(f"/api/studies/{STUDY}").json()["experiments"][0]
    f = ex["foci"][2]
    key = {"experiment_id": ex["experiment_id"], "focus": "3"}
    edits = [{**key, "field": "flag", "value": "duplicate", "expected": ""}] + [
        {**key, "field": a, "value": f"{f[a]:.2f}"} for a in "xyz"]
    assert client.post("/api/curation", json={"edits": edits}).status_code == 200
    cur = read_curation(project / "curation.tsv")
    assert cur.foci[["experiment_id", "focus", "flag"]].values.tolist() == [[ex["experiment_id"], 3, "duplicate"]]
    assert client.get(f"/api/studies/{STUDY}").json()["experiments"][0]["foci"][2]["flag"] == "duplicate"
    # clearing the flag removes the row
    assert client.post("/api/curation", json={"edits": [{**key, "field": "flag", "value": "",
                                                          "expected": "duplicate"}]}).status_code == 200
    assert len(read_curation(project / "curation.tsv").foci) == 0


# ----------------------------------------------------------------------------- the curated signed review, end to end
def test_a_curated_signed_review_through_the_api(client, project, db):
    kept, directions = {}, ("increase", "decrease", "increase", "decrease", "increase")
    studies = ["18550030", "19726030", "20421135", "12165364", "16043331"]
    for sid, direction, n in zip(studies, directions, (16, 12, 20, 14, 18)):
        table = client.get(f"/api/studies/{sid}").json()["experiments"][0]["experiment_id"]
        kept[table] = direction
        r = client.post("/api/curation", json={"edits": [
            {"experiment_id": table, "field": "include", "value": "yes", "expected": ""},
            {"experiment_id": table, "field": "direction", "value": direction, "expected": ""},
            {"experiment_id": table, "field": "n", "value": str(n), "expected": ""}]})
        assert r.status_code == 200, r.text
    r = client.post("/api/curation", json={"edits": [
        {"study_id": "22772359", "field": "include", "value": "no"},
        {"study_id": "22772359", "field": "reason", "value": "wrong_population"}]})
    assert r.status_code == 200, r.text
    query = "study=" + ",".join([*studies, "22772359"])
    flow = client.get("/api/prisma", params={"query": query}).json()
    curation_step = flow["excluded"][-1]
    with Corpus(db, read_only=True) as corpus:
        n_tables = {s: len(corpus.select_ids(f"study={s}", experiments="table")) for s in [*studies, "22772359"]}
    assert curation_step["criterion"] == "curation"
    assert curation_step["reasons"] == {"not_selected": sum(n_tables[s] - 1 for s in studies),
                                        "wrong_population": n_tables["22772359"]}
    assert flow["included"]["experiments"] == 5
    assert flow["included"]["awaiting_decision"] == {"experiments": 0, "studies": 0}

    spec = {"name": "curated", "selection": query, "experiments": "table", "n_iters": 50, "min_experiments": 2,
            "groups": [{"name": "treatment", "query": ""}]}
    assert client.post("/api/specs", json=spec).json() == {"spec": "curated.toml"}
    job = client.post("/api/jobs", json={"spec": "curated.toml", "name": "curated", "seed": 7}).json()
    done = wait_for(lambda: (j := client.get(f"/api/jobs/{job['id']}").json())["state"] not in
                    ("queued", "running") and j, timeout=600)
    assert done["state"] == "done", "\n".join(done["log"])
    out = project / "results" / "curated"
    for direction in ("increase", "decrease"):
        analysed = read_studyset(out / f"treatment_dir-{direction}_est-ale" / "studyset.tsv")
        assert set(analysed.experiments["experiment_id"]) == {t for t, d in kept.items() if d == direction}
        sizes = dict(zip(analysed.experiments["experiment_id"], analysed.experiments["n"]))
        assert all(sizes[t] == n for t, n in zip(kept, (16, 12, 20, 14, 18)) if t in sizes)
    limitations = " ".join(json.loads((out / "review.json").read_text())["limitations"])
    assert ("a curation table set values by hand for 5 of 5 selected studies: of the 5 included experiments, the tags "
            "of 0, the direction of 5 and the sample size of 5." in limitations)
    assert "It excluded" in limitations and "wrong population" in limitations
    report = (out / "report.html").read_text()
    assert "as single coordinate tables" in report and "where an experiment is a whole paper" not in report
    assert "Each experiment is one coordinate table as the database parsed it" in limitations
    written = json.loads((out / "flow.json").read_text())
    assert written["excluded"][-1]["reasons"] == curation_step["reasons"]
    listed = client.get("/api/results").json()["folders"]
    assert listed[0]["folder"] == "results/curated" and listed[0]["report"] == "results/curated/report.html"


# ----------------------------------------------------------------------------- specs, runs, files, uploads
@pytest.mark.parametrize("body, words", [
    ({"name": "../evil", "groups": [{"name": "a"}]}, "use letters, digits"),
    ({"name": "bad", "selection": "modaliti=x", "groups": [{"name": "a"}]}, "bad.toml, line 2, field selection"),
    ({"name": "bad", "groups": [{"name": "Not Snake"}]}, "snake_case"),
    ({"name": "bad", "file": "../outside.txt", "groups": [{"name": "a"}]}, "outside the project folder"),
])
def test_bad_specs_are_refused_and_not_written(client, project, body, words):
    response = client.post("/api/specs", json=body)
    assert response.status_code == 400 and words in response.json()["error"], response.text
    assert not list(project.glob("*.toml"))


def test_runs_refuse_bad_requests(client, project):
    assert client.post("/api/jobs", json={"spec": "none.toml", "name": "x"}).status_code == 400
    assert client.post("/api/jobs", json={"spec": "../x.toml", "name": "x"}).json()["error"].endswith(
        "lies outside the project folder")
    (project / "outside.toml").write_text('[corpus]\nfile = "/etc/hosts"\n[[groups]]\nname = "a"\n')
    assert "lies outside the project folder" in client.post(
        "/api/jobs", json={"spec": "outside.toml", "name": "x"}).json()["error"]
    assert client.get("/api/jobs/42").status_code == 404 and client.delete("/api/jobs/42").status_code == 404


def test_a_cancelled_run_leaves_no_folder(client, project, pain_path):
    (project / "slow.toml").write_text('[corpus]\nfile = "pain.json"\n[analysis]\nn_iters = 100000\n'
                                       'sample_size = 20\n[[groups]]\nname = "pain"\n')
    (project / "pain.json").write_bytes(pain_path.read_bytes())
    job = client.post("/api/jobs", json={"spec": "slow.toml", "name": "slow", "seed": 1}).json()
    queued = client.post("/api/jobs", json={"spec": "slow.toml", "name": "slow2"}).json()
    assert queued["state"] == "queued"
    wait_for(lambda: client.get(f"/api/jobs/{job['id']}").json()["state"] == "running", timeout=60)
    wait_for(lambda: list((project / "results").glob(".slow.tmp-*")), timeout=120)
    progress = wait_for(lambda: re.fullmatch(r"pain: [\d,]+ of 100,000",
                                             client.get(f"/api/jobs/{job['id']}").json()["progress"]), timeout=120)
    assert progress
    assert client.delete(f"/api/jobs/{queued['id']}").json()["state"] == "cancelled"
    client.delete(f"/api/jobs/{job['id']}")
    final = wait_for(lambda: (j := client.get(f"/api/jobs/{job['id']}").json())["state"] != "running" and j, 60)
    assert final["state"] == "cancelled"
    assert sorted(p.name for p in (project / "results").iterdir()) == []


@pytest.mark.parametrize("path", ["../secret.txt", "%2e%2e/secret.txt", "results/../../secret.txt", "/etc/hosts",
                                  "link/secret.txt"])
def test_no_path_outside_the_project_can_be_read(client, project, path):
    (project.parent / "secret.txt").write_text("secret")
    (project / "link").symlink_to(project.parent, target_is_directory=True)
    for url in (f"/files/{path}", f"/api/table?path={path}"):
        response = client.get(url)
        assert response.status_code in (400, 404), url
        assert "secret" != response.text


def test_uploads_are_validated_bounded_and_kept_in_the_project(client, project, nimare_test_data, monkeypatch):
    good = (nimare_test_data / "test_sleuth_file.txt").read_bytes()
    r = client.put("/api/uploads/mine.txt", content=good)
    assert r.status_code == 200 and r.json()["experiments"] > 0
    assert (project / "uploads" / "mine.txt").read_bytes() == good
    assert client.put("/api/uploads/mine.txt", content=good).status_code == 400  # exists
    bad = good.replace(b"\n", b"\nnot a coordinate line\n", 3)
    r = client.put("/api/uploads/bad.txt", content=bad)
    assert r.status_code == 400 and r.json()["error"].startswith("uploads/bad.txt, line ")
    assert client.put("/api/uploads/evil.exe", content=b"MZ").status_code == 400
    assert client.put("/api/uploads/..%2Fx.txt", content=good).status_code in (400, 404)
    monkeypatch.setattr(api, "MAX_UPLOAD_BYTES", 100)
    r = client.put("/api/uploads/big.txt", content=good)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert sorted(p.name for p in (project / "uploads").iterdir()) == ["mine.txt"]


def test_pages_static_files_and_openapi(client):
    for page in ("screening", "extraction", "runs", "results"):
        html = client.get(f"/{page}")
        assert html.status_code == 200 and 'src="/static/app.js"' in html.text
    assert client.get("/").status_code == 200
    assert client.get("/static/niivue.umd.js").content.startswith(b"(function(")
    assert client.get("/static/mni152_2mm.nii.gz").content[:2] == b"\x1f\x8b"
    assert "BSD" in client.get("/static/NIIVUE_LICENSE.txt").text
    assert client.get("/static/../app.py").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/candidates", "/api/studies/{study_id}", "/api/curation", "/api/prisma", "/api/jobs",
            "/api/results", "/api/uploads/{name}"} <= set(paths)
    outline = client.get("/api/outline").json()["views"]
    assert set(outline) == {"sagittal", "coronal", "axial"} and all(len(v[0]) > 100 for v in outline.values())


# ----------------------------------------------------------------------------- fuzzing: no server error
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=TEXT, text=TEXT, study=TEXT, field=st.sampled_from(["include", "reason", "n", "direction", "flag",
                                                                "contrast", "modality", "x", "weeks", "bogus"]),
       value=TEXT, focus=st.one_of(st.just(""), TEXT), expected=st.one_of(st.none(), TEXT))
def test_fuzzed_requests_never_crash_the_server(client, query, text, study, field, value, focus, expected):
    responses = [
        client.get("/api/candidates", params={"query": query, "text": text}),
        client.get("/api/prisma", params={"query": query}),
        client.get(f"/api/studies/{quote(study or 'x', safe='')}"),
        client.post("/api/curation", json={"edits": [{"experiment_id": study, "focus": focus, "field": field,
                                                      "value": value, "expected": expected}]}),
        client.post("/api/curation", json={"edits": [{"study_id": STUDY, "field": field, "value": value}]}),
        client.get("/api/table", params={"path": text or "x"}),
    ]
    for response in responses:
        assert response.status_code < 500, (response.request.url, response.text)
        assert "error" in response.json() or response.status_code == 200


# ----------------------------------------------------------------------------- killed in the middle of edits
def test_killing_the_server_mid_edit_leaves_a_valid_table(project, db):
    import httpx

    port = free_port()
    code = ("import sys, uvicorn; from neurochange.serve.app import create_app; "
            f"uvicorn.run(create_app(sys.argv[1], sys.argv[2]), host='127.0.0.1', port={port}, log_level='error')")
    studies = list(TREATMENT_IDS[:6])
    for round_ in range(4):
        server = subprocess.Popen([sys.executable, "-c", code, str(project), str(db)])
        try:
            wait_for(lambda: _up(port), timeout=60, step=0.1)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                for i in range(8 + round_ * 5):
                    http.post("/api/curation", json={"edits": [
                        {"study_id": studies[i % 6], "field": "n", "value": str(10 + i)},
                        {"study_id": studies[(i + 1) % 6], "field": "weeks", "value": str(i)}]})
            # the kill lands while another process's edits are being written
            sender = subprocess.Popen([sys.executable, "-c", _SENDER, str(port)], stdout=subprocess.DEVNULL)
            time.sleep(0.05 * (round_ + 1))
            os.kill(server.pid, signal.SIGKILL)
            sender.wait(30)
        finally:
            server.kill()
            server.wait()
        cur = read_curation(project / "curation.tsv")  # whole and valid
        assert set(cur.rows["id"]) <= set(studies) and len(cur.rows) > 0
        with Corpus(db, read_only=True) as corpus:
            assert len(select(corpus, "", curation=project / "curation.tsv").table) > 0


_SENDER = """
import sys, httpx
port = sys.argv[1]
with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
    for j in range(200):
        try:
            http.post("/api/curation", json={"edits": [{"study_id": "18550030", "field": "n", "value": str(50 + j)}]})
        except httpx.HTTPError:
            break
"""


def _up(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_curation_table_results_and_files_read_back(client, project):
    assert client.get("/api/curation").json() == {"version": "", "records": []}
    assert _edit(client, study_id=STUDY, field="n", value="16").status_code == 200
    table = client.get("/api/curation").json()
    assert table["version"] == read_curation(project / "curation.tsv").sha256
    assert [(r["study_id"], r["n"]) for r in table["records"]] == [(STUDY, "16")]
    folder = project / "results" / "one"
    folder.mkdir(parents=True)
    (folder / "provenance.json").write_text("{}")
    (folder / "clusters.tsv").write_text("cluster_id\tpeak_x\n1\t38\n")
    listed = client.get("/api/results").json()["folders"]
    assert listed == [{"folder": "results/one", "maps": [], "cluster_tables": ["results/one/clusters.tsv"],
                       "report": None, "files": ["results/one/clusters.tsv", "results/one/provenance.json"]}]
    assert client.get("/api/table", params={"path": "results/one/clusters.tsv"}).json()["rows"] == [
        {"cluster_id": "1", "peak_x": "38"}]
    assert client.get("/files/results/one/clusters.tsv").text == "cluster_id\tpeak_x\n1\t38\n"
    assert client.get("/files/results/one/none.tsv").status_code == 404
    assert client.get("/api/prisma", params={"query": "modaliti=x"}).status_code == 400


def test_serve_without_a_corpus_is_one_line_and_exit_2(project, tmp_path):
    from click.testing import CliRunner

    from neurochange.cli import cli

    result = CliRunner().invoke(cli, ["serve", str(project), "--db", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 2 and "no corpus at" in result.output and "corpus build" in result.output
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "missing"), "--db", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 2


def test_a_wrong_sign_flag_needs_a_signed_table_at_every_edit(client, project):
    ex = client.get(f"/api/studies/{STUDY}").json()["experiments"][0]
    key = {"experiment_id": ex["experiment_id"], "focus": "2"}
    refused = client.post("/api/curation", json={"edits": [{**key, "field": "flag", "value": "wrong_sign"}]})
    assert refused.status_code == 400 and "set it to increase or decrease first" in refused.json()["error"]
    assert not (project / "curation.tsv").exists()
    signed = {"experiment_id": ex["experiment_id"], "field": "direction", "value": "increase"}
    assert client.post("/api/curation", json={"edits": [signed, {**key, "field": "flag", "value": "wrong_sign"}]}
                       ).status_code == 200
    before = (project / "curation.tsv").read_bytes()
    cleared = client.post("/api/curation", json={"edits": [{**signed, "value": ""}]})
    assert cleared.status_code == 400 and "direction is unknown" in cleared.json()["error"]
    assert (project / "curation.tsv").read_bytes() == before
    waiting = client.get("/api/prisma", params={"query": f"study={STUDY}"}).json()["included"]["awaiting_decision"]
    assert waiting == {"experiments": len(client.get(f"/api/studies/{STUDY}").json()["experiments"]), "studies": 1}


def test_serve_on_a_port_in_use_is_one_line_and_exit_2(project, db):
    import socket

    from click.testing import CliRunner

    from neurochange.cli import cli

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", str(project), "--db", str(db), "--port", str(port)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
