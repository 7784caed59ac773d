"""``rnnlab inspect`` end to end on tiny bundles of every task: the report, its self-contained HTML rendered in
headless Chromium, and the bad-input cases (one line, exit 2, no traceback)."""
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rnnlab.cli import main
from rnnlab.structures import EncoderConfig

pytestmark = pytest.mark.slow  # each bundle trains for a few steps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))
CHROMIUM = "/usr/bin/chromium"
INSTALL = "apt-get install -y chromium   (Debian's package; Playwright's browser download is not reachable here)"


@pytest.fixture(scope="module")
def textgen_bundle(tmp_path_factory):
    from test_textgen import tiny_config

    from rnnlab.tasks import textgen

    return textgen.train(tiny_config(tmp_path_factory.mktemp("textgen")))


def classify_bundle(tmp_path, **model):
    from test_classify import tiny_config

    from rnnlab.tasks import classify
    from rnnlab.tasks.classify import ClassifierModelConfig

    config = tiny_config(tmp_path)
    config = replace(config, model=ClassifierModelConfig(embedding_size=8, **model),
                     trainer=replace(config.trainer, max_steps=3))
    return classify.train(config)


def run(capsys, *argv):
    code = main(["inspect", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_textgen_report_renders_its_figures_in_chromium(textgen_bundle, tmp_path, capsys):
    code, out, err = run(capsys, textgen_bundle, "--input", 'The cat (sat) "on" the mat.', "--out", tmp_path / "r",
                         "--signal", "inside_parens", "re:at")
    assert code == 0, err
    html_path = tmp_path / "r" / "report.html"
    assert f"report: {html_path}" in out
    page = html_path.read_text(encoding="utf-8")
    for name in ("gradient_flow", "jacobian", "clipping", "vanishing", "gates_0", "saturation", "hidden_0", "cell_0",
                 "units_inside_parens", "units_re_at", "saliency"):
        assert (tmp_path / "r" / f"{name}.png").is_file()
        assert f'alt="{name}" src="data:image/png;base64,' in page
    # self-contained: no network, no script, no file it would have to fetch
    assert not re.search(r"https?://|<script|<link|src=\"(?!data:)", page)
    assert "left out: attention" in page  # a language model has no attention weights: stated
    shot = screenshot(html_path, tmp_path)
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r'<img [^>]*>', "", page), encoding="utf-8")
    blank = screenshot(bare, tmp_path)
    # the figures are there: many more inked pixels than the page without its images, and matplotlib's blue lines
    assert ink(shot) > 0.04 and ink(shot) > 1.5 * ink(blank), (ink(shot), ink(blank))
    assert near(shot, (31, 119, 180)) > 10 * max(near(blank, (31, 119, 180)), 50)  # the coloured text has a few


def screenshot(html: Path, tmp_path: Path) -> np.ndarray:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"the report test renders the HTML in headless Chromium, which is not installed: {INSTALL}")
    png = tmp_path / f"{html.stem}.png"
    subprocess.run([shutil.which("chromium") or CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'chrome'}",
                    f"--screenshot={png}", "--window-size=1200,2000", html.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    from PIL import Image

    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def ink(image: np.ndarray) -> float:
    """The share of pixels that are not (near) white."""
    return float((image.min(axis=-1) < 230).mean())


def near(image: np.ndarray, rgb) -> int:
    return int((np.abs(image - np.array(rgb)).max(axis=-1) < 30).sum())


def test_classifier_with_attention_pooling_gets_attention_and_saliency(tmp_path, capsys):
    bundle = classify_bundle(tmp_path, encoder=EncoderConfig(kind="gru", hidden_size=8), pooling="attention")
    code, out, err = run(capsys, bundle, "--input", "the film is good !", "--out", tmp_path / "r", "--sections",
                         "attention,saliency,gates")
    assert code == 0, err
    for name in ("attention", "saliency", "gates_0", "saturation"):
        assert (tmp_path / "r" / f"{name}.png").is_file()


def test_translate_bundle_gets_its_alignment(tmp_path, capsys):
    from test_translate import tiny_config

    from rnnlab.tasks import translate

    bundle = translate.train(tiny_config(tmp_path))
    code, out, err = run(capsys, bundle, "--input", "May 3, 2021", "--out", tmp_path / "r", "--sections",
                         "attention,gradients", "--reference", "false")
    assert code == 0, err
    assert (tmp_path / "r" / "attention.png").is_file() and (tmp_path / "r" / "gradient_flow.png").is_file()


def test_cnn_bundle_asked_for_gates_is_a_one_line_error_and_all_falls_back(tmp_path, capsys):
    bundle = classify_bundle(tmp_path, encoder=EncoderConfig(kind="cnn", hidden_size=8))
    code, out, err = run(capsys, bundle, "--out", tmp_path / "r", "--sections", "gates")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "--sections gates: the bundle's encoder is 'cnn', which has no gates" in err
    code, out, err = run(capsys, bundle, "--out", tmp_path / "all")
    assert code == 0 and "left out gates" in err and (tmp_path / "all" / "saliency.png").is_file()


def test_bad_input_is_one_line_exit_2(textgen_bundle, tmp_path, capsys):
    # a character the tokenizer never saw: refused with --unknown error, naming it
    code, _, err = run(capsys, textgen_bundle, "--input", "The cat ☃", "--unknown", "error", "--out", tmp_path)
    assert code == 2 and "never saw: '☃'" in err and len(err.strip().splitlines()) == 1
    # ... or mapped to <unk> with a stated warning
    code, _, err = run(capsys, textgen_bundle, "--input", "The cat ☃", "--sections", "states", "--out", tmp_path)
    assert code == 0 and "warning: 1 character(s) the bundle's tokenizer never saw, mapped to <unk>: '☃'" in err
    # longer than the limit: cut, with a warning naming both lengths
    long = tmp_path / "long.txt"
    long.write_text("The cat sat. " * 10, encoding="utf-8")
    code, _, err = run(capsys, textgen_bundle, "--input", long, "--max_length", "20", "--sections", "states",
                       "--out", tmp_path)
    assert code == 0 and "the input has 130 tokens; inspecting the first 21 (--max_length 20)" in err
    for argv, message in [
        (["--input", " "], "the input is empty"),
        (["--sections", "gatez"], "unknown --sections gatez"),
        (["--signal", "quotes"], "unknown signal 'quotes'"),
        (["--sections", "attention"], "returns no attention weights"),
        (["--input", "ab", "--max_length", "1"], "--max_length must be an integer of at least 2"),
    ]:
        code, _, err = run(capsys, textgen_bundle, *argv, "--out", tmp_path / "x")
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
    code, _, err = run(capsys, tmp_path / "missing", "--out", tmp_path / "x")
    assert code == 2 and "missing" in err
