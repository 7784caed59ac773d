"""The dataset registry: every entry's fields are well formed (URLs only checked for shape: nothing is fetched)."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from rnnlab.data import registry
from rnnlab.data.registry import DATASETS, Dataset, RemoteFile

ENTRIES = list(DATASETS.values())


def test_the_registry_covers_every_text_task():
    assert {d.task for d in ENTRIES} == {"classify", "tag", "translate", "textgen"}
    assert registry.names() == tuple(DATASETS) and all(name == d.name for name, d in DATASETS.items())


@pytest.mark.parametrize("dataset", ENTRIES, ids=[d.name for d in ENTRIES])
def test_entry_is_well_formed(dataset):
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", dataset.name)
    assert dataset.description.strip() and dataset.licence.strip()
    assert urlsplit(dataset.homepage).scheme in ("http", "https")
    for file in dataset.files:
        url = urlsplit(file.url)
        assert url.scheme == "https" and url.netloc, file.url  # real entries: https only
        assert file.filename and "." in file.filename and not url.query
        if file.sha256 is None:
            assert file.checksum_source == ""
        else:
            assert re.fullmatch(r"[0-9a-f]{64}", file.sha256)
            assert re.match(r"[\w.-]+/[\w.-]+:\S+", file.checksum_source), file.checksum_source
            assert isinstance(file.size, int) and file.size > 0
    # what the download leaves: every plain file, and each archive itself
    for file in dataset.files:
        assert file.filename in dataset.unpacks_to
    assert dataset.train.startswith(f"rnnlab train {dataset.task} --data {{dir}}/")
    assert dataset.train_command("/c/x") == dataset.train.replace("{dir}", "/c/x")


def test_unverified_entries_have_no_checksum_and_say_so():
    unverified = [d for d in ENTRIES if not d.verifiable]
    assert [d.name for d in unverified] == ["tatoeba-deu-eng"]
    assert all(d.size is None for d in unverified)
    assert "cannot verify" in unverified[0].description


def test_checksums_are_unique():
    sums = [f.sha256 for d in ENTRIES for f in d.files if f.sha256]
    assert len(sums) == len(set(sums))


def test_get_names_the_datasets_when_unknown():
    assert registry.get("imdb").task == "classify"
    with pytest.raises(ValueError, match=r"unknown dataset 'imbd'; the datasets are: imdb, "):
        registry.get("imbd")


GOOD = dict(url="https://example.org/data.tar.gz", sha256="a" * 64, size=10, checksum_source="o/r:checksums.tsv")


@pytest.mark.parametrize("change, message", [
    (dict(url="http://example.org/data.tar.gz"), "https://"),
    (dict(url="ftp://example.org/data.tar.gz"), "https://"),
    (dict(url="https://example.org/"), "end in a file name"),
    (dict(sha256="A" * 64), "64 lowercase hex"),
    (dict(sha256="abc"), "64 lowercase hex"),
    (dict(checksum_source=""), "checksum_source"),
    (dict(sha256=None, size=None), "checksum_source but no sha256"),
    (dict(size=0), "positive number of bytes"),
])
def test_bad_files_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        RemoteFile(**{**GOOD, **change})


def test_plain_http_is_allowed_only_on_this_machine():
    assert RemoteFile("http://127.0.0.1:8000/x.txt", None, None).filename == "x.txt"
    with pytest.raises(ValueError, match="https://"):
        RemoteFile("http://10.0.0.1/x.txt", None, None)


DATASET = dict(name="x", task="tag", description="d", licence="l", homepage="https://x.org/",
               files=(RemoteFile(**GOOD),), unpacks_to=("data",), train="rnnlab train tag --data {dir}/data")


@pytest.mark.parametrize("change, message", [
    (dict(name="Bad Name"), "lowercase letters"),
    (dict(task="speech"), "task must be one of classify, tag, translate, textgen"),
    (dict(files=()), "at least one file"),
    (dict(files=(RemoteFile(**GOOD), RemoteFile(**GOOD))), "share a name"),
    (dict(licence=" "), "licence must not be empty"),
    (dict(unpacks_to=()), "unpacks_to must name"),
    (dict(unpacks_to=("../up",)), "relative path inside"),
    (dict(unpacks_to=("/abs",)), "relative path inside"),
    (dict(remove=("a/../../b",)), "relative path inside"),
    (dict(train="rnnlab train classify --data {dir}/data"), "train must be 'rnnlab train tag"),
    (dict(train="rnnlab train tag --data data"), "train must be"),
])
def test_bad_datasets_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        Dataset(**{**DATASET, **change})


def test_every_train_command_parses_with_the_real_cli_options():
    """The registry's commands name options that exist, with values of their types (no drift from the tasks)."""
    import shlex

    from rnnlab.cli import build_parser
    from rnnlab.data import registry as reg

    parser = build_parser()
    for dataset in reg.DATASETS.values():
        argv = shlex.split(dataset.train_command("/data/x"))
        assert argv[:2] == ["rnnlab", "train"], dataset.name
        cfg = parser.parse_args(argv[1:])
        assert cfg.train.task == dataset.task, dataset.name
