"""Where the time goes: the stage table of a prediction (library and ``predict --profile``)."""

from __future__ import annotations

import threading
from pathlib import Path

from coreperturb._api import predict_to_file
from coreperturb._profiling import STAGES, profiling, stage


def test_stages_nest_and_count_per_thread() -> None:
    with profiling() as prof:
        with stage("tables"), stage("trees"):
            pass
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
    assert prof.wall > 0 and set(STAGES) <= set(prof.seconds)
    assert prof.seconds["tables"] >= 0 and prof.seconds["trees"] >= 0
    with stage("features"):  # outside a profile: nothing recorded, nothing raised
        pass


def test_predict_profile(model_dir: Path, tmp_path: Path) -> None:
    rep = predict_to_file(model_dir, tmp_path / "p.parquet", perturbations="G0001,G0004", profile=True)
    assert rep.profile is not None
    sec = rep.profile.seconds
    assert all(sec[s] > 0 for s in ("retrieval", "features", "trees", "tables", "writing")), sec
    assert rep.profile.cpu > 0 and "CPU seconds per million pairs" in rep.profile.render(rep.pairs)
    assert predict_to_file(model_dir, tmp_path / "q.parquet", perturbations="G0001").profile is None
