"""The README's results come from the committed tables (python -m lab.tools.readme), never from a hand copy."""

import shutil

import pandas as pd

from lab import paths
from lab.tools import readme


def test_the_readme_results_block_matches_the_committed_tables():
    assert readme.main(["--check"]) == 0, "the README's results block is stale: run `make readme`"


def test_a_changed_table_makes_the_block_stale_and_make_readme_rewrites_only_the_block(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(paths.results_dir(), results)
    table = pd.read_csv(results / "cnn_hparams.csv")
    on = "val_accuracy" if "val_accuracy" in table else "test_accuracy"  # the best run is chosen on validation
    table.loc[table[on].idxmax(), "test_accuracy"] = 0.99987  # the best run's test accuracy changes
    table.to_csv(results / "cnn_hparams.csv", index=False)
    copy = tmp_path / "README.md"
    shutil.copy(readme.README, copy)
    before = copy.read_text()
    assert readme.main(["--check", "--readme", str(copy), "--results-dir", str(results)]) == 1
    assert copy.read_text() == before  # --check writes nothing
    assert readme.main(["--readme", str(copy), "--results-dir", str(results)]) == 0
    after = copy.read_text()
    assert "**99.99%**" in after and "**99.99%**" not in before
    outside = [text.split(readme.BEGIN)[0] + text.split(readme.END)[1] for text in (before, after)]
    assert outside[0] == outside[1]
    assert readme.main(["--check", "--readme", str(copy), "--results-dir", str(results)]) == 0


def test_a_readme_without_the_markers_is_refused(tmp_path, capsys):
    path = tmp_path / "README.md"
    path.write_text("# no block here\n")
    assert readme.main(["--readme", str(path)]) == 2
    assert "no results block" in capsys.readouterr().err and path.read_text() == "# no block here\n"
