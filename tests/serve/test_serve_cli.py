"""rnnlab serve on the command line: bundles checked before anything is bound (one line, exit 2)."""
import shutil

import pytest

from rnnlab.cli import main
from rnnlab.serve.models import default_name, name_bundles


@pytest.mark.parametrize("damage, message", [
    ("missing", "no model bundle"),
    ("config", "not valid JSON"),
    ("weights", "model.safetensors"),
])
def test_a_missing_or_corrupted_bundle_is_one_line_and_exit_2(bundles, tmp_path, capsys, damage, message):
    path = tmp_path / "broken" / "bundle"
    if damage != "missing":
        shutil.copytree(bundles["poems"], path)
        if damage == "config":
            (path / "config.json").write_text("{ truncated", encoding="utf-8")
        else:
            (path / "model.safetensors").unlink()
    assert main(["serve", str(path), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_names_default_to_the_run_and_duplicates_are_refused(bundles, capsys):
    assert default_name(bundles["poems"]) == "run"  # <root>/poems/run/bundle
    assert list(name_bundles([str(bundles["poems"]), str(bundles["ner"])], ["a", "b"])) == ["a", "b"]
    assert main(["serve", str(bundles["poems"]), str(bundles["ner"])]) == 2
    assert "--name" in capsys.readouterr().err
    assert main(["serve", str(bundles["poems"]), "--limits.max_sessions", "0"]) == 2
