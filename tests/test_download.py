"""Fetching the databases: the shipped manifest, the mirror, real HTTP against a local server."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from neurochange.cli import cli
from neurochange.errors import DataUnavailableError
from neurochange.sources import download

UPSTREAM = {  # from shared/data/README.md
    "neurosynth": ("neurosynth-v7", "neurosynth/neurosynth-data", "209c33cd009d0b069398a802198b41b9c488b9b7"),
    "neuroquery": ("neuroquery-v1", "neuroquery/neuroquery_data", "4580f86267fb7c14ac1f601e298cbed898d79f2d"),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_sums(mirror: Path) -> dict[str, str]:
    sums = {}
    for line in (mirror / "SHA256SUMS").read_text().splitlines():
        digest, relpath = line.split(None, 1)
        sums[relpath.strip()] = digest
    return sums


def cache_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (temporary ``.part`` files included)."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty NEUROCHANGE_HOME, no mirror, no download base."""
    monkeypatch.setenv("NEUROCHANGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NEUROCHANGE_DATA_MIRROR", raising=False)
    monkeypatch.delenv("NEUROCHANGE_DOWNLOAD_BASE", raising=False)
    return tmp_path / "home"


# --- the shipped manifest -------------------------------------------------------------------


def test_shipped_manifest_equals_mirror_sums(data_mirror):
    manifest = download.load_manifest()
    files = download.data_files(None, manifest)
    sums = read_sums(data_mirror)
    assert {f.relpath: f.sha256 for f in files} == sums
    on_disk = {f"{d.name}/{p.name}" for d in data_mirror.iterdir() if d.is_dir() for p in d.iterdir()}
    assert {f.relpath for f in files} == on_disk
    for f in files:
        assert f.size == (data_mirror / f.relpath).stat().st_size


def test_shipped_manifest_urls_point_at_pinned_commits():
    manifest = download.load_manifest()
    assert set(manifest) == {"neurosynth", "neuroquery"}
    for name, (folder, repo, commit) in UPSTREAM.items():
        ds = manifest[name]
        assert (ds.folder, ds.repository, ds.commit) == (folder, repo, commit)
        for f in ds.files:
            # NeuroQuery keeps its data under data/, its LICENSE at the root (checked in the repository).
            path = f.name if name == "neurosynth" or f.name == "LICENSE" else f"data/{f.name}"
            assert f.url == f"https://github.com/{repo}/raw/{commit}/{path}"
        assert ds.license_file in {f.name for f in ds.files}


# --- from the real mirror -------------------------------------------------------------------


def test_fetch_all_from_mirror_then_from_cache(data_mirror, home, monkeypatch):
    monkeypatch.setenv("NEUROCHANGE_DATA_MIRROR", str(data_mirror))
    sums = read_sums(data_mirror)
    first = download.fetch_all()
    assert sorted(g.file.relpath for g in first) == sorted(sums)
    assert {g.source for g in first} == {"mirror"}
    for got in first:
        assert got.path == home / "data" / got.file.relpath
        assert sha256(got.path.read_bytes()) == sums[got.file.relpath]
    assert cache_files(home / "data") == sorted(
        [g.path for g in first] + [g.path.with_name(g.path.name + ".sha256") for g in first]
    )

    second = download.fetch_all()
    assert {(g.source, g.check) for g in second} == {("cache", "stamp")}

    for name, (folder, _, _) in UPSTREAM.items():
        paths = download.fetch_dataset(name)
        assert sorted(paths) == sorted(p.name for p in (data_mirror / folder).iterdir())
        assert all(path == home / "data" / folder / fname for fname, path in paths.items())
    assert download.fetch("data-neurosynth_version-7_coordinates.tsv.gz") == (
        home / "data" / "neurosynth-v7" / "data-neurosynth_version-7_coordinates.tsv.gz"
    )


# --- a small dataset served over real HTTP --------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    served: dict[str, bytes] = {}
    truncated: set[str] = set()
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        body = self.served.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.truncated:
            self.wfile.write(body[: len(body) // 2])  # announce all, send half, close
            self.close_connection = True
        else:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


def _toy_files() -> dict[str, bytes]:
    """Small files in the databases' formats."""
    rows = "id\ttable_id\ttable_name\tx\ty\tz\n" + "".join(
        f"{1000 + i}\t{i}\tTable {i % 3}\t{-40 + i}\t{12 - i}\t{30 + 2 * i}\n" for i in range(400)
    )
    return {
        "LICENSE": b"Toy licence: for tests only.\n",
        "data-toy_version-1_coordinates.tsv.gz": gzip.compress(rows.encode(), mtime=0),
        "data-toy_version-1_vocabulary.txt": b"amygdala\ndepression\nprefrontal\n",
        "data-toy_version-1_truncated.tsv.gz": gzip.compress(rows.encode() * 3, mtime=0),
        "data-toy_version-1_wrongsum.txt": b"served bytes\n",
        "data-toy_version-1_missing.txt": b"never served\n",
    }


def _write_manifest(path: Path, base: str, files: dict[str, bytes], sums: dict[str, str] | None = None) -> None:
    lines = ["version = 1\n", "[datasets.toy]", 'title = "Toy"', 'folder = "toy-v1"',
             'repository = "example/toy"', 'commit = "0000000000000000000000000000000000000000"',
             'license = "CC0-1.0"', 'license_file = "LICENSE"']
    for name, body in files.items():
        lines += ["", "[[datasets.toy.files]]", f'name = "{name}"', f'url = "{base}/upstream/{name}"',
                  f'sha256 = "{(sums or {}).get(name, sha256(body))}"', f"size = {len(body)}"]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def toy(tmp_path, home):
    """A local HTTP server (127.0.0.1, ephemeral port) serving a toy dataset, and its manifest."""
    files = _toy_files()
    served = {f"/upstream/{name}": body for name, body in files.items() if "missing" not in name}
    served["/upstream/data-toy_version-1_wrongsum.txt"] = b"served byteZ\n"  # same size, other bytes
    _Handler.served = served
    _Handler.truncated = {"/upstream/data-toy_version-1_truncated.tsv.gz"}
    _Handler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _write_manifest(tmp_path / "toy.toml", base, files)
    try:
        yield {"manifest": download.load_manifest(tmp_path / "toy.toml"), "files": files,
               "requests": _Handler.requests, "base": base, "home": home}
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_download_verifies_then_cache_is_used(toy):
    m, name = toy["manifest"], "data-toy_version-1_coordinates.tsv.gz"
    seen = []
    path = download.fetch(name, manifest=m, progress=lambda *a: seen.append(a))
    assert path == toy["home"] / "data" / "toy-v1" / name
    assert path.read_bytes() == toy["files"][name]
    assert seen[-1] == ("toy-v1/" + name, len(toy["files"][name]), len(toy["files"][name]))
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)
    assert toy["requests"] == [f"/upstream/{name}"]

    again = download.ensure(download.lookup(name, m))
    assert (again.source, again.check, again.path) == ("cache", "stamp", path)
    assert toy["requests"] == [f"/upstream/{name}"]  # no second request


@pytest.mark.parametrize(
    "name, words",
    [
        ("data-toy_version-1_truncated.tsv.gz", "truncated response: received"),
        ("data-toy_version-1_wrongsum.txt", "has SHA-256 " + sha256(b"served byteZ\n")),
        ("data-toy_version-1_missing.txt", "HTTP 404"),
    ],
)
def test_http_failures_raise_one_line_and_leave_nothing(toy, name, words):
    with pytest.raises(DataUnavailableError) as err:
        download.fetch(name, manifest=toy["manifest"])
    message = str(err.value)
    assert words in message and f"toy-v1/{name}" in message and "\n" not in message
    assert cache_files(toy["home"]) == []
    assert toy["requests"] == [f"/upstream/{name}"]


def test_wrong_checksum_message_names_both_sums(toy):
    name = "data-toy_version-1_wrongsum.txt"
    with pytest.raises(DataUnavailableError, match=f"expected {sha256(toy['files'][name])}"):
        download.fetch(name, manifest=toy["manifest"])


def test_connection_refused_without_mirror(tmp_path, home):
    with socket.socket() as sock:  # bound, not listening: connecting is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        files = {"LICENSE": b"x\n"}
        _write_manifest(tmp_path / "m.toml", f"http://127.0.0.1:{port}", files)
        with pytest.raises(DataUnavailableError) as err:
            download.fetch("toy-v1/LICENSE", manifest=download.load_manifest(tmp_path / "m.toml"))
    message = str(err.value)
    assert message.startswith("cannot download toy-v1/LICENSE from http://127.0.0.1:")
    assert "refused" in message.lower() and "set NEUROCHANGE_DATA_MIRROR" in message and "\n" not in message
    assert cache_files(home) == []


def test_download_base_overrides_manifest_urls(tmp_path, toy, monkeypatch):
    _write_manifest(tmp_path / "elsewhere.toml", "http://127.0.0.1:9", toy["files"])
    monkeypatch.setenv("NEUROCHANGE_DOWNLOAD_BASE", toy["base"] + "/selfhosted/")
    # the base replaces the whole URL: <base>/<folder>/<name>
    _Handler.served["/selfhosted/toy-v1/LICENSE"] = toy["files"]["LICENSE"]
    got = download.ensure(download.lookup("LICENSE", download.load_manifest(tmp_path / "elsewhere.toml")))
    assert got.source == "download" and got.path.read_bytes() == toy["files"]["LICENSE"]
    assert toy["requests"] == ["/selfhosted/toy-v1/LICENSE"]


def test_interrupted_download_leaves_nothing(toy):
    def interrupt(relpath, done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download.fetch("data-toy_version-1_coordinates.tsv.gz", manifest=toy["manifest"], progress=interrupt)
    assert cache_files(toy["home"]) == []


def test_stamp_trusted_until_size_or_mtime_change_then_bad_file_replaced(toy):
    m, name = toy["manifest"], "data-toy_version-1_vocabulary.txt"
    good = toy["files"][name]
    path = download.fetch(name, manifest=m)
    st = path.stat()
    path.write_bytes(b"X" * len(good))  # same size, other bytes, same mtime: the stamp vouches
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (download.ensure(download.lookup(name, m)).check) == "stamp"

    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched: hashed again
    got = download.ensure(download.lookup(name, m))
    assert (got.source, got.check) == ("download", "hashed")
    assert path.read_bytes() == good
    assert len(toy["requests"]) == 2

    path.with_name(name + ".sha256").unlink()  # no stamp: hashed, found good, stamped
    got = download.ensure(download.lookup(name, m))
    assert (got.source, got.check) == ("cache", "hashed")
    assert path.with_name(name + ".sha256").is_file()


def test_mirror_is_used_instead_of_network_and_failures_are_clear(tmp_path, toy, monkeypatch):
    m = toy["manifest"]
    mirror = tmp_path / "mirror"
    (mirror / "toy-v1").mkdir(parents=True)
    (mirror / "toy-v1" / "LICENSE").write_bytes(toy["files"]["LICENSE"])
    (mirror / "toy-v1" / "data-toy_version-1_vocabulary.txt").write_bytes(b"damaged\n")
    monkeypatch.setenv("NEUROCHANGE_DATA_MIRROR", str(mirror))

    got = download.ensure(download.lookup("LICENSE", m))
    assert got.source == "mirror" and got.path.read_bytes() == toy["files"]["LICENSE"]

    stale = toy["home"] / "data" / "toy-v1" / "data-toy_version-1_coordinates.tsv.gz"
    stale.write_bytes(b"a damaged cached copy")  # fails its checksum: removed even if no new copy comes
    with pytest.raises(DataUnavailableError, match="is missing from the mirror NEUROCHANGE_DATA_MIRROR="):
        download.fetch("data-toy_version-1_coordinates.tsv.gz", manifest=m)
    assert not stale.exists()
    size = len(toy["files"]["data-toy_version-1_vocabulary.txt"])
    with pytest.raises(DataUnavailableError, match=rf"mirror file .* has 8 bytes, expected {size}; the mirror copy"):
        download.fetch("data-toy_version-1_vocabulary.txt", manifest=m)
    assert toy["requests"] == []  # the network is never tried when a mirror is set
    assert {p.name for p in cache_files(toy["home"])} == {"LICENSE", "LICENSE.sha256"}


def test_unknown_names_are_clear(home):
    with pytest.raises(DataUnavailableError, match="'nope' is not in the manifest"):
        download.fetch("nope")
    with pytest.raises(DataUnavailableError, match="unknown dataset 'brainmap'; known datasets: neurosynth, neuroquery"):
        download.fetch_dataset("brainmap")


def test_home_defaults_to_user_cache(monkeypatch):
    import platformdirs

    monkeypatch.delenv("NEUROCHANGE_HOME", raising=False)
    assert download.home() == Path(platformdirs.user_cache_dir("neurochange"))
    monkeypatch.setenv("NEUROCHANGE_HOME", "/somewhere/else")
    assert download.data_dir() == Path("/somewhere/else/data")


# --- command line ---------------------------------------------------------------------------


def test_cli_data_fetch_and_path(data_mirror, home, monkeypatch):
    monkeypatch.setenv("NEUROCHANGE_DATA_MIRROR", str(data_mirror))
    runner = CliRunner()
    first = runner.invoke(cli, ["data", "fetch", "neurosynth"])
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("from mirror  sha256 ok") for line in lines[:3])
    assert lines[3] == f"3 files verified in {home / 'data'} (mirror: {data_mirror})"

    second = runner.invoke(cli, ["data", "fetch", "neurosynth"])
    assert all(line.startswith("cached       sha256 ok (stamp)") for line in second.stdout.splitlines()[:3])

    path = runner.invoke(cli, ["data", "path", "neuroquery"])
    assert path.stdout == f"{home / 'data' / 'neuroquery-v1'}\n"


def test_cli_data_fetch_offline_exits_2_with_one_line(home, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("NEUROCHANGE_DOWNLOAD_BASE", f"http://127.0.0.1:{sock.getsockname()[1]}")
        result = CliRunner().invoke(cli, ["data", "fetch", "neuroquery"])
    assert result.exit_code == 2
    assert result.stderr.startswith("neurochange: error: cannot download neuroquery-v1/LICENSE from")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert cache_files(home) == []
