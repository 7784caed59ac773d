"""Downloads against a local HTTP server (no test touches the internet): verified success and no second fetch,
a wrong checksum, a connection cut mid-file, a 404, a stalled server, and archives with unsafe members."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from download_server import make_tar

from rnnlab.data import download
from rnnlab.data.download import (
    DownloadError,
    UnsafeArchiveError,
    download_dataset,
    fetch,
    unpack,
)
from rnnlab.data.registry import Dataset, RemoteFile


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


CORPUS = make_tar({"corpus/train/pos/1.txt": b"good film", "corpus/train/neg/2.txt": b"bad film",
                   "corpus/README": b"a tiny corpus"})
NOTES = "Line one.\nLine two, with ümlauts.\n".encode()


def fixture_dataset(server, *, corpus_sha=None, notes_sha=None, name="fixture", **serve) -> Dataset:
    """A two-file dataset (a .tar.gz and a .txt) served by the local server."""
    corpus_url = server.serve("/data/corpus.tar.gz", CORPUS, **serve)
    notes_url = server.serve("/data/notes.txt", NOTES)
    return Dataset(
        name=name, task="classify", description="a fixture", licence="CC0", homepage="https://example.org/",
        files=(RemoteFile(corpus_url, corpus_sha or sha(CORPUS), len(CORPUS), checksum_source="the test"),
               RemoteFile(notes_url, notes_sha or sha(NOTES), len(NOTES), checksum_source="the test")),
        unpacks_to=("corpus/train/pos", "corpus/train/neg", "notes.txt"),
        remove=("corpus/README",),
        train="rnnlab train classify --data {dir}/corpus/train",
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# --- success and re-runs ----------------------------------------------------------------------------

def test_download_verifies_unpacks_and_does_not_fetch_again(http_server, tmp_path):
    dataset = fixture_dataset(http_server)
    got = download_dataset(dataset, root=tmp_path, progress=False)
    folder = tmp_path / "fixture"
    assert got.folder == folder and got.verified and got.missing == ()
    assert (folder / "corpus/train/pos/1.txt").read_bytes() == b"good film"
    assert (folder / "notes.txt").read_bytes() == NOTES
    assert not (folder / "corpus/README").exists()  # dataset.remove
    assert [f.fetched for f in got.files] == [True, True]
    assert not [p for p in folder.iterdir() if p.name.startswith((".unpack-", ".corpus", ".notes"))]
    assert download.status(dataset, tmp_path) == download.Status(folder, downloaded=True, verified=True)
    assert got.train_command == f"rnnlab train classify --data {folder}/corpus/train"

    again = download_dataset(dataset, root=tmp_path, progress=False)
    assert [f.fetched for f in again.files] == [False, False] and again.verified
    assert http_server.hits == {"/data/corpus.tar.gz": 1, "/data/notes.txt": 1}

    download_dataset(dataset, root=tmp_path, force=True, progress=False)
    assert http_server.hits == {"/data/corpus.tar.gz": 2, "/data/notes.txt": 2}


def test_a_changed_file_in_the_cache_is_fetched_again(http_server, tmp_path):
    dataset = fixture_dataset(http_server)
    download_dataset(dataset, root=tmp_path, progress=False)
    (tmp_path / "fixture/notes.txt").write_bytes(b"tampered")
    got = download_dataset(dataset, root=tmp_path, progress=False)
    assert [f.fetched for f in got.files] == [False, True]
    assert (tmp_path / "fixture/notes.txt").read_bytes() == NOTES


def test_a_deleted_unpacked_folder_is_unpacked_again_without_fetching(http_server, tmp_path):
    dataset = fixture_dataset(http_server)
    download_dataset(dataset, root=tmp_path, progress=False)
    import shutil

    shutil.rmtree(tmp_path / "fixture/corpus")
    download_dataset(dataset, root=tmp_path, progress=False)
    assert (tmp_path / "fixture/corpus/train/neg/2.txt").is_file()
    assert http_server.hits["/data/corpus.tar.gz"] == 1


def test_without_a_checksum_the_file_is_kept_but_reported_unverified(http_server, tmp_path, caplog):
    url = http_server.serve("/pairs.txt", b"Hallo\tHello\n")
    dataset = Dataset(name="pairs", task="translate", description="d", licence="l", homepage="https://x.org/",
                      files=(RemoteFile(url, None, None),), unpacks_to=("pairs.txt",),
                      train="rnnlab train translate --data {dir}/pairs.txt")
    with caplog.at_level("WARNING", logger="rnnlab"):
        got = download_dataset(dataset, root=tmp_path, progress=False)
    assert not got.verified and "cannot be verified" in caplog.text
    assert download.status(dataset, tmp_path).verified is False
    assert download.status(dataset, tmp_path).downloaded is True
    state = json.loads((tmp_path / "pairs" / download.STATE_FILE).read_text())
    assert state["files"]["pairs.txt"] == {"url": url, "sha256": sha(b"Hallo\tHello\n"), "verified": False}


def test_progress_bar_goes_to_stderr(http_server, tmp_path, capsys):
    url = http_server.serve("/notes.txt", NOTES)
    fetch(url, tmp_path / "notes.txt", sha256=sha(NOTES), progress=True)
    out = capsys.readouterr()
    assert out.out == "" and "notes.txt" in out.err


# --- failures leave nothing behind --------------------------------------------------------------------

def test_wrong_checksum_raises_and_leaves_nothing(http_server, tmp_path):
    dataset = fixture_dataset(http_server, corpus_sha="0" * 64)
    with pytest.raises(DownloadError, match=r"corpus\.tar\.gz: SHA-256 mismatch: expected 0{64}, got [0-9a-f]{64}"):
        download_dataset(dataset, root=tmp_path, progress=False)
    assert not (tmp_path / "fixture").exists()
    assert download.status(dataset, tmp_path).downloaded is False


def test_connection_cut_mid_file_raises_and_leaves_nothing(http_server, tmp_path):
    dataset = fixture_dataset(http_server, cut_after=100)
    with pytest.raises(DownloadError) as e:
        download_dataset(dataset, root=tmp_path, progress=False)
    message = str(e.value)
    assert message.startswith(f"{http_server.base}/data/corpus.tar.gz: ")
    assert f"after 100 of {len(CORPUS):,} bytes" in message and "partial file was removed" in message
    assert leftovers(tmp_path) == []


def test_404_names_the_url(http_server, tmp_path):
    url = http_server.base + "/missing.txt"
    with pytest.raises(DownloadError, match=rf"^{url}: HTTP 404 "):
        fetch(url, tmp_path / "missing.txt", sha256="0" * 64, progress=False)
    assert leftovers(tmp_path) == []


def test_a_stalled_server_times_out(http_server, tmp_path):
    url = http_server.serve("/slow.txt", NOTES, stall=1.0)
    with pytest.raises(DownloadError, match=r"slow\.txt: no data for 0\.2 s after 0 of .* \(timed out\)"):
        fetch(url, tmp_path / "slow.txt", sha256=sha(NOTES), timeout=0.2, progress=False)
    assert leftovers(tmp_path) == []


def test_nothing_listens_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match=r"^http://127\.0\.0\.1:9/x\.txt: cannot connect"):
        fetch("http://127.0.0.1:9/x.txt", tmp_path / "x.txt", timeout=2, progress=False)
    assert leftovers(tmp_path) == []


def test_a_later_file_failing_keeps_the_verified_ones_for_the_next_run(http_server, tmp_path):
    dataset = fixture_dataset(http_server, notes_sha="f" * 64)
    with pytest.raises(DownloadError, match="notes.txt: SHA-256 mismatch"):
        download_dataset(dataset, root=tmp_path, progress=False)
    folder = tmp_path / "fixture"
    assert (folder / "corpus.tar.gz").is_file() and not (folder / "notes.txt").exists()
    assert download.status(dataset, tmp_path).downloaded is False


# --- unpacking ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("members, links, why", [
    ({"ok.txt": b"x", "../evil.txt": b"x"}, None, "'..'"),
    ({"a/../../evil.txt": b"x"}, None, "'..'"),
    ({"/tmp/abs-evil.txt": b"x"}, None, "absolute path"),
    ({}, {"link": ("/etc/passwd", tarfile.SYMTYPE)}, "outside the target"),
    ({}, {"a/link": ("../../outside", tarfile.SYMTYPE)}, "outside the target"),
    ({}, {"hard": ("../outside", tarfile.LNKTYPE)}, "outside the target"),
])
def test_unsafe_tar_members_are_refused_before_anything_is_written(tmp_path, members, links, why):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(make_tar(members, links=links))
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=rf"bad\.tar\.gz: refused member .*{why}.*nothing was extracted"):
        unpack(archive, target)
    assert leftovers(target) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz", "out"]


def test_a_tar_with_a_dotdot_member_is_refused_through_the_download(http_server, tmp_path):
    bad = make_tar({"data/ok.txt": b"x", "../escape.txt": b"x"})
    url = http_server.serve("/bad.tar.gz", bad)
    dataset = Dataset(name="bad", task="textgen", description="d", licence="l", homepage="https://x.org/",
                      files=(RemoteFile(url, sha(bad), len(bad), checksum_source="the test"),),
                      unpacks_to=("data",), train="rnnlab train textgen --data {dir}/data")
    with pytest.raises(UnsafeArchiveError, match=r"refused member '\.\./escape\.txt'"):
        download_dataset(dataset, root=tmp_path / "cache", progress=False)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "cache/escape.txt").exists()
    assert not (tmp_path / "cache/bad/data").exists()


def test_safe_links_inside_the_archive_are_kept(tmp_path):
    archive = tmp_path / "ok.tgz"
    archive.write_bytes(make_tar({"d/a.txt": b"A"}, links={"d/b.txt": ("a.txt", tarfile.SYMTYPE)}))
    assert unpack(archive, tmp_path / "out") == ["d"]
    assert (tmp_path / "out/d/b.txt").read_bytes() == b"A"


def test_zip_unpacks_and_refuses_dotdot(tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(make_zip({"deu.txt": b"Hi.\tHallo!\n", "_about.txt": b"about"}))
    assert unpack(good) == ["_about.txt", "deu.txt"]
    bad = tmp_path / "bad.zip"
    bad.write_bytes(make_zip({"../evil.txt": b"x"}))
    with pytest.raises(UnsafeArchiveError, match=r"refused member '\.\./evil\.txt'"):
        unpack(bad, tmp_path / "out")
    assert leftovers(tmp_path / "out") == [] and not (tmp_path.parent / "evil.txt").exists()


def test_gz_unpacks_to_the_file_without_gz(tmp_path):
    archive = tmp_path / "pairs.tsv.gz"
    archive.write_bytes(gzip.compress(b"Haus\thouse\n"))
    assert unpack(archive) == ["pairs.tsv"]
    assert (tmp_path / "pairs.tsv").read_bytes() == b"Haus\thouse\n"


def test_a_corrupt_archive_is_a_clear_error(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(CORPUS[: len(CORPUS) // 2])
    with pytest.raises(DownloadError, match=r"broken\.tar\.gz: cannot unpack"):
        unpack(archive, tmp_path / "out")
    assert leftovers(tmp_path / "out") == []


def test_unpacking_again_replaces_the_previous_entries(tmp_path):
    archive = tmp_path / "c.tar.gz"
    archive.write_bytes(make_tar({"c/new.txt": b"new"}))
    (tmp_path / "c").mkdir()
    (tmp_path / "c/old.txt").write_text("old")
    unpack(archive)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["new.txt"]


# --- the cache folder -----------------------------------------------------------------------------------

def test_cache_dir_comes_from_rnnlab_data_or_defaults_under_home(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path / "cache"))
    assert download.cache_dir() == tmp_path / "cache"
    assert download.dataset_dir("imdb") == tmp_path / "cache" / "imdb"
    monkeypatch.delenv("RNNLAB_DATA")
    assert download.cache_dir() == Path(os.path.expanduser("~/.cache/rnnlab-data"))
    assert download.display_path(Path.home() / ".cache/rnnlab-data/imdb") == "~/.cache/rnnlab-data/imdb"


def test_partial_files_of_a_killed_download_are_removed_but_fresh_ones_kept(http_server, tmp_path):
    stale = tmp_path / ".notes.txt.abc123.part"
    fresh = tmp_path / ".notes.txt.def456.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"another download in progress")
    os.utime(stale, (0, 0))
    url = http_server.serve("/notes.txt", NOTES)
    fetch(url, tmp_path / "notes.txt", sha256=sha(NOTES), progress=False)
    assert not stale.exists() and fresh.exists()
