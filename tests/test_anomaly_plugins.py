"""A type registered from outside the package: the example of docs/anomaly-types.md, run."""

import re

from benchmark.records.record import load

from .conftest import ROOT, cli

DOC = ROOT / "docs" / "anomaly-types.md"


def example_module() -> str:
    """The first Python block of the docs page (the complete example type)."""
    return re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)


def test_the_documented_type_registers_injects_and_is_scored(tmp_path):
    (tmp_path / "search_storm.py").write_text(example_module())
    result = cli(
        "experiment=smoke",
        "model=markov",
        "setting=unsupervised",
        "anomaly.plugins=[search_storm]",
        "+anomaly.mix.search_storm=2.0",
        "+anomaly.params.search_storm.max_searches=40",
        f"results_dir={tmp_path / 'results'}",
        cwd=tmp_path,  # where the module is
    )
    assert result.returncode == 0, result.stderr
    record = load(next((tmp_path / "results").glob("smoke/*/record.json")))
    roc_auc = f"{record.result.roc_auc:.3f}"  # a single run ends with its headline metrics
    assert f"ok: {record.run_id}  markov/numpy  ROC-AUC {roc_auc} [" in result.stdout
    test = record.data["splits"]["test"]["per_type"]
    assert test["search_storm"] > 0
    assert test["search_storm"] > test["click_flood"]  # weight 2 against 1
    assert "search_storm" in record.result.per_type


def test_an_unknown_type_or_module_is_one_line_naming_the_fix(tmp_path):
    unknown = cli("experiment=smoke", "+anomaly.mix.search_storm=1.0", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "needs its module in anomaly.plugins" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    missing = cli("experiment=smoke", "anomaly.plugins=[no_such_module]", cwd=tmp_path)
    assert missing.returncode == 2
    assert "anomaly.plugins: cannot import 'no_such_module'" in missing.stderr
