"""rnnlab datasets [list | download NAME [--force]]: the listing, a download from a local server, the errors."""
from __future__ import annotations

import hashlib

import pytest
from download_server import make_tar

from rnnlab.cli import main
from rnnlab.data import registry
from rnnlab.data.registry import Dataset, RemoteFile


def run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def served(http_server, monkeypatch):
    """A registry of one dataset, 'tiny', served by the local server (a verified .tar.gz)."""
    body = make_tar({"tiny/input.txt": b"To be, or not to be.\n"})
    url = http_server.serve("/tiny.tar.gz", body)
    tiny = Dataset(name="tiny", task="textgen", description="a tiny text", licence="public domain",
                   homepage="https://example.org/", unpacks_to=("tiny.tar.gz", "tiny/input.txt"),
                   files=(RemoteFile(url, hashlib.sha256(body).hexdigest(), len(body), checksum_source="the test"),),
                   train="rnnlab train textgen --data {dir}/tiny/input.txt")
    monkeypatch.setattr(registry, "DATASETS", {"tiny": tiny})
    return http_server


@pytest.mark.parametrize("argv", [["datasets"], ["datasets", "list"]])
def test_listing_shows_every_dataset_its_status_and_the_embedded_ones(argv, cache, capsys):
    code, out, err = run(argv, capsys)
    assert code == 0 and err == ""
    for d in registry.DATASETS.values():
        assert d.name in out and d.licence.split()[0] in out
        assert d.train_command(str(cache / d.name)) in out
    assert out.count("not downloaded") == len(registry.DATASETS)
    assert "checksum: unverified (no checksum known)" in out  # tatoeba-deu-eng
    assert "rnnlab train textgen" in out and "Embedded" in out


def test_download_prints_the_files_and_the_train_command_then_lists_it_verified(served, cache, capsys):
    code, out, err = run(["datasets", "download", "tiny"], capsys)
    assert code == 0, err
    assert (cache / "tiny/tiny/input.txt").read_text() == "To be, or not to be.\n"
    assert "(downloaded; SHA-256 verified)" in out
    assert f"train: rnnlab train textgen --data {cache}/tiny/tiny/input.txt" in out

    code, out, _ = run(["datasets", "download", "tiny"], capsys)
    assert code == 0 and "(already there; SHA-256 verified)" in out
    assert served.hits == {"/tiny.tar.gz": 1}
    code, out, _ = run(["datasets", "download", "tiny", "--force"], capsys)
    assert code == 0 and served.hits == {"/tiny.tar.gz": 2}

    code, out, _ = run(["datasets"], capsys)
    assert code == 0 and "downloaded, verified" in out


def test_a_failed_download_is_one_line_with_the_url_and_exit_1(served, cache, capsys):
    served.routes["/tiny.tar.gz"].cut_after = 10
    code, out, err = run(["datasets", "download", "tiny"], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{served.base}/tiny.tar.gz: the connection closed after 10 of" in err
    assert not (cache / "tiny").exists()


@pytest.mark.parametrize("argv, message", [
    (["datasets", "download", "nosuch"], "unknown dataset 'nosuch'; the datasets are: "),
    (["datasets", "download"], "name"),
    (["datasets", "download", "tiny-shakespeare", "--timeout", "0"], "--timeout must be a positive"),
    (["datasets", "fetch"], "fetch"),
])
def test_usage_errors_are_one_line_and_exit_2(argv, message, cache, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not cache.exists()


def test_help_names_the_subcommands_and_options(capsys):
    code, out, _ = run(["datasets", "--help"], capsys)
    assert code == 0 and "download" in out and "list" in out and "RNNLAB_DATA" in out
    code, out, _ = run(["datasets", "download", "--help"], capsys)
    assert code == 0 and "--force" in out and "--timeout" in out and "name" in out
