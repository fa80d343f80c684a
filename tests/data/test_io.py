from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from coreperturb.data import QueryTable, load_perturbqa, read_query_table, write_query_table
from coreperturb.errors import DataValidationError


def _csv(path: Path, rows: list[tuple[object, ...]], header: str = "pert,gene,label,split") -> Path:
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


GOOD = [("A", "X", 1, "train"), ("A", "Y", 0, "train"), ("B", "X", 0, "test"), ("B", "Y", 1, "test")]


def test_load_perturbqa_tidy_columns(synth_table: QueryTable) -> None:
    f = synth_table.frame
    assert list(f.columns) == ["cell_line", "perturbation", "gene", "task", "label", "split"]
    assert set(f["task"].astype(str)) == {"de", "dir"}
    assert set(f["label"].unique()) <= {0, 1}
    for _, _, sub in synth_table.groups():
        tr, te = sub.split("train"), sub.split("test")
        assert not set(tr["perturbation"]) & set(te["perturbation"])


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    _csv(tmp_path / "x-de.csv", [("A", "X", "train")], header="pert,gene,split")
    with pytest.raises(DataValidationError, match=r"x-de\.csv: missing column\(s\) 'label'"):
        load_perturbqa(tmp_path, ["x"], ["de"])


def test_bad_label_names_row_and_column(tmp_path: Path) -> None:
    rows = [*GOOD, ("C", "X", "maybe", "test")]
    p = _csv(tmp_path / "x-de.csv", rows)
    with pytest.raises(
        DataValidationError, match=rf"{p.name}, row 6, column 'label': label 'maybe' is not 0 or 1"
    ):
        load_perturbqa(tmp_path, ["x"], ["de"])


def test_bad_split_and_empty_split(tmp_path: Path) -> None:
    _csv(tmp_path / "x-de.csv", [*GOOD, ("C", "X", 1, "valid")])
    with pytest.raises(DataValidationError, match=r"row 6, column 'split': split 'valid'"):
        load_perturbqa(tmp_path, ["x"], ["de"])
    _csv(tmp_path / "y-de.csv", GOOD[:2])
    with pytest.raises(DataValidationError, match=r"empty 'test' split"):
        load_perturbqa(tmp_path, ["y"], ["de"])


def test_train_test_overlap_is_rejected(tmp_path: Path) -> None:
    _csv(tmp_path / "x-de.csv", [*GOOD, ("A", "Z", 1, "test")])
    with pytest.raises(
        DataValidationError, match=r"row 6, column 'perturbation': test perturbation 'A' also occurs"
    ):
        load_perturbqa(tmp_path, ["x"], ["de"])


def test_duplicate_pair_is_rejected(tmp_path: Path) -> None:
    _csv(tmp_path / "x-de.csv", [*GOOD, ("A", "X", 0, "train")])
    with pytest.raises(DataValidationError, match=r"row 6: duplicate pair perturbation='A' gene='X'"):
        load_perturbqa(tmp_path, ["x"], ["de"])


def test_missing_file_lists_present(tmp_path: Path) -> None:
    _csv(tmp_path / "x-de.csv", GOOD)
    with pytest.raises(DataValidationError, match=r"k562-de\.csv: file not found .*x-de\.csv"):
        load_perturbqa(tmp_path, ["k562"], ["de"])


def test_user_table_roundtrip_parquet_and_csv(tmp_path: Path) -> None:
    df = pd.DataFrame(GOOD, columns=["perturbation", "gene", "label", "split"]).assign(
        cell_line="c", task="de"
    )
    t = QueryTable(df, "mem")
    for name in ("t.parquet", "t.csv"):
        write_query_table(t, tmp_path / name)
        back = read_query_table(tmp_path / name)
        assert back.frame[["perturbation", "gene", "label"]].equals(
            t.frame[["perturbation", "gene", "label"]]
        )


def test_user_table_missing_cell_line_and_task_have_defaults(tmp_path: Path) -> None:
    p = _csv(tmp_path / "u.csv", GOOD)
    t = read_query_table(p)  # one cell line named after the file, task de
    assert len(t) == 4 and set(t.frame["cell_line"]) == {"u"} and set(t.frame["task"]) == {"de"}
    t = read_query_table(p, cell_line="c", task="dir")
    assert set(t.frame["cell_line"]) == {"c"} and set(t.frame["task"]) == {"dir"}


def test_synthetic_is_deterministic(tmp_path: Path) -> None:
    from coreperturb.data import write_synthetic

    a = write_synthetic(tmp_path / "a", seed=3, n_genes=120)
    b = write_synthetic(tmp_path / "b", seed=3, n_genes=120)
    for name in ("synth_a-de.csv", "drugs-de.csv"):
        assert (a.data_dir / name).read_text() == (b.data_dir / name).read_text()
    assert (a.kg_dir / "go_annotations.tsv").read_text() == (b.kg_dir / "go_annotations.tsv").read_text()


def test_tables_are_read_by_their_inner_suffix_and_within_bounds(tmp_path: Path) -> None:
    from coreperturb.data._io import read_any

    frame = pd.DataFrame({"perturbation": ["A", "B"], "gene": ["X", "Y"], "label": ["1", "0"]})
    frame.to_csv(tmp_path / "q.tsv.gz", sep="\t", index=False)  # compressed TSV: read as TSV
    assert list(read_any(tmp_path / "q.tsv.gz").columns) == ["perturbation", "gene", "label"]
    with pytest.raises(DataValidationError, match="not a regular file"):
        read_any(Path("/dev/zero"))  # a device never fills memory
    with pytest.raises(DataValidationError, match="not a regular file"):
        read_any(tmp_path)


def test_a_pair_repeated_in_another_case_is_rejected(tmp_path: Path) -> None:
    from coreperturb.data._schema import validate_frame

    df = pd.DataFrame(
        {
            "cell_line": "x",
            "task": "de",
            "perturbation": ["P1", "P1", "P2", "P2"],
            "gene": ["g0128", "G0128", "A", "B"],
            "label": [1, 0, 0, 1],
            "split": ["train", "train", "test", "test"],
        }
    )
    with pytest.raises(
        DataValidationError, match=r"q\.csv, row 3: .*'G0128' repeats row 2 .*'g0128'.*letter case"
    ):
        validate_frame(df, "q.csv")


def test_table_tasks_reads_the_task_column_alone(tmp_path: Path) -> None:
    """What fit trains when no task is named: the task column's values, from the column alone (the whole
    table is checked when it is read), ``de`` without the column; the same from Parquet."""
    from coreperturb.data._io import table_tasks

    assert table_tasks(_csv(tmp_path / "a.csv", GOOD)) == ("de",)
    rows = [(*r, t) for r, t in zip(GOOD, ["DE ", "dir", "de", "dir"], strict=True)]
    both = _csv(tmp_path / "b.csv", rows, header="pert,gene,label,split,task")
    assert table_tasks(both) == ("de", "dir")
    pq = tmp_path / "b.parquet"
    pd.read_csv(both).to_parquet(pq)
    assert table_tasks(pq) == ("de", "dir")
    bad = _csv(tmp_path / "c.csv", [(*GOOD[0], "bogus")], header="pert,gene,label,split,task")
    assert table_tasks(bad) == ()
    with pytest.raises(DataValidationError, match="bogus"):
        read_query_table(bad, for_fit=True)
