"""Chaos: concurrent writers on one output, a full disk, a read-only target. Nothing good is lost, nothing
half-written is left, every failure is one line (rc 2) naming the path.

The full disk and the read-only target are small tmpfs mounts when the tests run as root (as in CI); else
the full disk is simulated (a write that raises ENOSPC half-way) and the read-only target is a chmod-ed
folder (which root would ignore).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result

from coreperturb.cli import app
from tests.cli import runner


def _one_error(res: Result, *needles: str) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "internal error" not in res.output and "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@contextlib.contextmanager
def _held_by_another_process(path: Path) -> Iterator[None]:
    """Another process holds ``path``'s write lock (as a concurrent run of coreperturb would)."""
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom coreperturb._files import exclusive\n"
        "with exclusive(Path(sys.argv[1])):\n    print('held', flush=True)\n    sys.stdin.readline()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the other run ends normally
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _predict(model_dir: Path, out: Path) -> Result:
    args = ["predict", "--model-dir", str(model_dir), "--perturbations", "G0001,G0004", "--out", str(out)]
    return runner.invoke(app, args)


def test_a_second_writer_of_one_output_stops_and_the_first_keeps_its_file(
    model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.parquet"
    assert _predict(model_dir, out).exit_code == 0
    good = pd.read_parquet(out)
    with _held_by_another_process(out):
        _one_error(_predict(model_dir, out), str(out), "another coreperturb")
        pd.testing.assert_frame_equal(pd.read_parquet(out), good)  # untouched
    with _held_by_another_process(tmp_path / "m"):
        # a second fit into the same new directory stops before it fits anything
        res = runner.invoke(app, ["fit", "--out", str(tmp_path / "m")])
        _one_error(res, str(tmp_path / "m"), "another coreperturb")
        assert "fitting" not in res.output and not (tmp_path / "m").exists()
    with _held_by_another_process(out.with_name(out.name + ".report")):
        _one_error(runner.invoke(app, ["report", str(out)]), "another coreperturb")
    assert _predict(model_dir, out).exit_code == 0  # once the other run is gone
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".partial", ".tmp", ".lock"))]


def test_fit_refuses_an_existing_model_before_fitting(model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    res = runner.invoke(app, ["fit", "--out", str(target)])
    _one_error(res, str(target), "--overwrite")
    assert "fitting" not in res.output and "loading data" not in res.output


def _can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = Path(f"/tmp/coreperturb-probe-{uuid.uuid4().hex[:8]}")
    probe.mkdir()
    try:
        ok = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True
        )
        if ok.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], check=False)
        return True
    finally:
        probe.rmdir()


MOUNT = _can_mount()


@contextlib.contextmanager
def _tmpfs(base: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    d = base / f"fs-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    opts = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def _fill(d: Path) -> None:
    with contextlib.suppress(OSError), (d / "filler").open("wb") as fh:
        while True:
            fh.write(b"\0" * 65536)


def test_a_full_disk_loses_no_report_and_leaves_no_partial_file(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preds = tmp_path / "p.parquet"
    assert _predict(model_dir, preds).exit_code == 0
    with contextlib.ExitStack() as stack:
        if MOUNT:
            d = stack.enter_context(_tmpfs(tmp_path, "4m"))
        else:
            d = tmp_path / "disk"
            d.mkdir()
        shutil.copy(preds, d / "p.parquet")
        assert runner.invoke(app, ["report", str(d / "p.parquet")]).exit_code == 0
        before = {p.name: p.read_bytes() for p in d.glob("p.report*")}
        if MOUNT:
            _fill(d)
        else:  # simulate: every write fails half-way with ENOSPC

            def full(self: Path, data: object, *a: object, **k: object) -> int:
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(Path, "write_text", full)
            monkeypatch.setattr(Path, "write_bytes", full)
        res = runner.invoke(app, ["report", str(d / "p.parquet")])
        _one_error(res, "No space left on device")
        assert {p.name: p.read_bytes() for p in d.glob("p.report*")} == before  # nothing lost
        assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temporary file left
        res = _predict(model_dir, d / "q.parquet")
        assert res.exit_code == 2 and "internal error" not in res.output, res.output
        assert not (d / "q.parquet").exists() and not [p for p in d.iterdir() if p.name.startswith(".")]


@pytest.mark.skipif(not MOUNT and os.geteuid() == 0, reason="as root without mount, nothing is read-only")
def test_a_read_only_target_stops_before_any_work(model_dir: Path, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        if MOUNT:
            ro = stack.enter_context(_tmpfs(tmp_path, "1m", read_only=True))
        else:
            ro = tmp_path / "ro"
            ro.mkdir()
            ro.chmod(0o555)
        res = _predict(model_dir, ro / "p.parquet")
        _one_error(res, str(ro))
        res = runner.invoke(app, ["fit", "--out", str(ro / "m")])
        _one_error(res, str(ro), "cannot be written")
        assert "fitting" not in res.output
