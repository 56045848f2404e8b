from benchmark.records.record import RunRecord, dumps, from_dict
from benchmark.report.table import main, markdown, rows


def record(model: str, auc: float, status: str = "ok", framework: str = "torch") -> RunRecord:
    rec = {
        "status": status,
        "model": model,
        "framework": framework,
        "objective": "classify",
        "run_id": model,
        "error": None if status == "ok" else "boom",
    }
    if status == "ok":
        rec["metrics"] = {
            "roc_auc": auc,
            "roc_auc_ci": [auc - 0.05, auc + 0.05],
            "pr_auc": 0.5,
            "f1": 0.4,
            "best_f1_oracle": 0.45,
            "recall_at_1pct_fpr": 0.2,
            "event_roc_auc": None,
        }
        rec["timing"] = {"train_seconds": 1.0, "infer_seq_per_s": 100.0}
        rec["n_params"] = 10
    return from_dict(rec)


def test_rows_rank_by_roc_auc_and_skip_failures():
    table = rows(
        [
            record("a", 0.7),
            record("b", 0.9),
            record("c", 0.0, status="failed"),
            record("d", float("nan")),
        ]
    )
    assert [r["model"] for r in table] == ["b", "a", "d"]
    assert [r["rank"] for r in table] == [1, 2, 3]
    assert table[0]["roc_auc_95ci"] == "[0.850, 0.950]"


def test_baselines_show_no_objective():
    table = rows([record("iforest", 0.8, framework="numpy")])
    assert table[0]["objective"] == "-"
    text = markdown(table)
    assert text.splitlines()[0].startswith("| rank | model | framework | objective | roc_auc")
    assert "| 1 | iforest | numpy | - | 0.800 |" in text


def test_cli_reads_records_and_lists_failures(tmp_path, capsys):
    for rec in (record("a", 0.7), record("c", 0.0, status="failed")):
        (tmp_path / rec.run_id).mkdir()
        (tmp_path / rec.run_id / "record.json").write_text(dumps(rec))
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| 1 | a | torch | classify | 0.700 |" in out
    assert "failed: c c: boom" in out
    running = from_dict({"run_id": "r", "model": "gru", "started_at": "2026-12-01T10:00:00"})
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "record.json").write_text(dumps(running))
    assert main([str(tmp_path)]) == 0
    assert "running (or killed before it ended): gru r, since 2026-12-01T10:00:00" in (
        capsys.readouterr().out
    )
    assert main([str(tmp_path / "missing")]) == 2
