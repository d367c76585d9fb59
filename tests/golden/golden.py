"""Golden outputs: every command a user runs, at fixed seeds, reduced to one hash per file.

    python tests/golden/golden.py make    # write tests/golden/manifest.json
    python tests/golden/golden.py check   # rerun and compare; exit 1 on any difference
    python tests/golden/golden.py check --keep DIR   # also keep the outputs in DIR (to diff them)

Used to show that a reorganisation changes no number a user sees. Hashes are of content:
NIfTI images are hashed decompressed (header + data), TSV/JSON/PNG/HTML/NPZ byte for byte,
except the fields listed in ``IGNORED`` (what legitimately differs between two runs or
two versions of the code). Runs take ~3 minutes on 2 cores; the database mirror
(``NEUROCHANGE_DATA_MIRROR``, default ``../shared/data``) is needed for the chi2 case.
Not a pytest test: the hashes follow the installed numpy/scipy/numba, which CI does not pin.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
MANIFEST = HERE / "manifest.json"

#: Files and JSON fields left out of the comparison, and why.
IGNORED = {
    "timings.json": "seconds per step",
    "provenance.json:versions": "package versions",
    "provenance.json:created": "time of the run",
    "diagnostics.json:versions": "package versions",
    "overlap.json:a": "absolute path of the input folder",
    "overlap.json:b": "absolute path of the input folder",
    "report.html": "embeds provenance (versions); its figures are checked as PNG files",
}


def _cli(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "-m", "neurochange", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def _strip(obj, drop: set[str]):
    if isinstance(obj, dict):
        return {k: _strip(v, drop) for k, v in obj.items() if k not in drop}
    if isinstance(obj, list):
        return [_strip(v, drop) for v in obj]
    return obj


def file_hash(path: Path) -> str | None:
    name = path.name
    if name in IGNORED:
        return None
    if name.endswith(".nii.gz"):
        data = gzip.decompress(path.read_bytes())
    elif name.endswith(".json"):
        drop = {key.split(":", 1)[1] for key in IGNORED if key.startswith(name + ":")}
        data = json.dumps(_strip(json.loads(path.read_text()), drop), sort_keys=True).encode()
    else:
        data = path.read_bytes()
    return hashlib.sha256(data).hexdigest()


def run_all(work: Path) -> dict[str, str]:
    import nimare

    env = dict(os.environ)
    env.setdefault("NEUROCHANGE_DATA_MIRROR", str(PROJECT.parent / "shared" / "data"))
    env["NEUROCHANGE_HOME"] = str(work / "home")
    pain = Path(nimare.__file__).parent / "tests" / "data" / "test_pain_dataset.json"
    out = work / "out"
    out.mkdir()
    studies = json.loads(pain.read_text())
    ids = sorted(studies)
    group_a, group_b = work / "pain_a.json", work / "pain_b.json"
    group_a.write_text(json.dumps({k: studies[k] for k in ids[: len(ids) // 2]}))
    group_b.write_text(json.dumps({k: studies[k] for k in ids[len(ids) // 2:]}))
    common = ["--seed", "7", "--cores", "2"]
    _cli("ale", str(pain), "--out", str(out / "ale"), "--iters", "300", *common, env=env)
    _cli("ale", str(pain), "--out", str(out / "ale_fwhm"), "--iters", "200", "--fwhm", "10", *common,
         env=env)
    _cli("mkda", str(pain), "--out", str(out / "mkda"), "--iters", "200", *common, env=env)
    _cli("kda", str(pain), "--out", str(out / "kda"), "--iters", "200", *common, env=env)
    _cli("contrast", str(group_a), str(group_b), "--out", str(out / "contrast"), "--iters", "200", *common, env=env)
    _cli("contrast", str(group_a), str(group_b), "--out", str(out / "balanced"), "--iters", "20", "--balanced",
         *common, env=env)
    _cli("conjunction", str(out / "ale"), str(out / "mkda"), "--out", str(out / "conjunction"), env=env)
    _cli("corpus", "build", env=env)
    _cli("select", "modality=psychotherapy", "--out", str(work / "sel_a"), env=env)
    _cli("select", "modality=brain_stimulation", "--out", str(work / "sel_b"), env=env)
    _cli("chi2", str(work / "sel_a" / "studyset.json"), "--against", str(work / "sel_b" / "studyset.json"),
         "--out", str(out / "chi2"), "--iters", "100", *common, env=env)
    shutil.copytree(out / "ale", out / "diagnose")
    _cli("diagnose", str(out / "diagnose"), "--iters", "100", "--repetitions", "2", "--seed", "7",
         "--cores", "2", env=env)
    _cli("review", str(PROJECT / "examples" / "simulated_review.toml"), "--out", str(out / "review"),
         "--iters", "300", *common, env=env)
    hashes = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            digest = file_hash(path)
            if digest is not None:
                hashes[str(path.relative_to(out))] = digest
    return hashes


def main(argv: list[str]) -> int:
    keep = None
    if len(argv) == 3 and argv[1] == "--keep":
        argv, keep = argv[:1], Path(argv[2])
    if len(argv) != 1 or argv[0] not in {"make", "check"}:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        hashes = run_all(Path(tmp))
        if keep is not None:
            shutil.copytree(Path(tmp) / "out", keep)
    if argv[0] == "make":
        MANIFEST.write_text(json.dumps({"ignored": IGNORED, "files": hashes}, indent=1) + "\n")
        print(f"{len(hashes)} files hashed into {MANIFEST}")
        return 0
    golden = json.loads(MANIFEST.read_text())["files"]
    differ = sorted(k for k in golden.keys() & hashes.keys() if golden[k] != hashes[k])
    missing = sorted(golden.keys() - hashes.keys())
    extra = sorted(hashes.keys() - golden.keys())
    for label, names in (("differs", differ), ("missing", missing), ("new", extra)):
        for name in names:
            print(f"{label}: {name}")
    same = len(golden) - len(differ) - len(missing)
    print(f"{same} of {len(golden)} golden files identical; {len(differ)} differ, {len(missing)} missing, "
          f"{len(extra)} new")
    return 1 if differ or missing or extra else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
