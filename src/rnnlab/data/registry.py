"""Canonical public datasets for the text tasks, with where to fetch them and how to train on them.

Each :class:`Dataset` names its files by URL with the SHA-256 that a public checksum list states for that file
(its ``checksum_source``: a repository and a path), so that ``rnnlab datasets download NAME`` can verify what
arrives. Where no stated checksum could be found the entry says ``sha256=None`` and the download reports that it
cannot verify the file; no checksum here was computed by us or guessed.

Files land in ``<cache>/<name>/`` (see :func:`rnnlab.data.download.cache_dir`); ``train`` is the command that
uses them, with ``{dir}`` standing for that folder.

    >>> get("tiny-shakespeare").task
    'textgen'
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal, Optional
from urllib.parse import unquote, urlsplit

Task = Literal["classify", "tag", "translate", "textgen"]
TASK_NAMES: tuple[str, ...] = ("classify", "tag", "translate", "textgen")
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz", ".tar", ".zip", ".gz")
"""What :func:`rnnlab.data.download.unpack` unpacks (a plain ``.gz`` is one compressed file)."""

LOOPBACK = ("127.0.0.1", "localhost", "::1")
"""Hosts that a plain http:// URL may name: a server on this machine (the tests' fixture server)."""
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def url_filename(url: str) -> str:
    """The file name at the end of ``url``'s path (``.../aclImdb_v1.tar.gz`` -> ``aclImdb_v1.tar.gz``)."""
    return unquote(PurePosixPath(urlsplit(url).path).name)


def archive_suffix(filename: str) -> Optional[str]:
    """The archive suffix of ``filename`` (``.tar.gz``, ``.zip``, ...), None for a plain file."""
    lower = filename.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), None)


def _relative(path: str, what: str) -> None:
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts or "\\" in path:
        raise ValueError(f"{what} must be a relative path inside the dataset folder, got {path!r}")


@dataclass(frozen=True)
class RemoteFile:
    """One file to download."""

    url: str
    """An https:// URL whose path ends in the file's name (the name it is saved under); http:// only for a
    server on this machine."""
    sha256: Optional[str]
    """The SHA-256 (64 lowercase hex digits) stated for this file by ``checksum_source``; None = not known, the
    download cannot verify it."""
    size: Optional[int]
    """The file's size in bytes as stated with the checksum; None = not known."""
    checksum_source: str = ""
    """Where the checksum is stated: ``owner/repo:path`` of a public checksum list. Empty when sha256 is None."""
    unpack: bool = True
    """Unpack the file after download when it is an archive (.tar.gz, .tgz, .tar, .zip, .gz)."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        loopback = parts.scheme == "http" and parts.hostname in LOOPBACK
        if not (parts.scheme == "https" or loopback) or not parts.netloc:
            raise ValueError(f"url must be an https:// URL, got {self.url!r}")
        name = url_filename(self.url)
        if not name or "." not in name.strip(".") or name.startswith("."):
            raise ValueError(f"url must end in a file name (e.g. .../data.tar.gz), got {self.url!r}")
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise ValueError(f"sha256 of {self.url} must be 64 lowercase hex digits or None, got {self.sha256!r}")
        if self.sha256 is not None and not self.checksum_source:
            raise ValueError(f"sha256 of {self.url} needs its checksum_source (where the checksum is stated)")
        if self.sha256 is None and self.checksum_source:
            raise ValueError(f"{self.url} names a checksum_source but no sha256")
        if self.size is not None and (not isinstance(self.size, int) or self.size <= 0):
            raise ValueError(f"size of {self.url} must be a positive number of bytes or None, got {self.size!r}")

    @property
    def filename(self) -> str:
        """The name the file is saved under in the dataset's folder."""
        return url_filename(self.url)

    @property
    def is_archive(self) -> bool:
        """Whether the download unpacks this file."""
        return self.unpack and archive_suffix(self.filename) is not None


@dataclass(frozen=True)
class Dataset:
    """A public dataset: its files, licence, what it unpacks to and the command that trains on it."""

    name: str
    """Its name on the command line and its folder in the cache: lowercase letters, digits, '-'."""
    task: Task
    """The rnnlab task it is for."""
    description: str
    """One or two sentences: what it is, how many examples, the format of the files."""
    files: tuple[RemoteFile, ...]
    """What to download."""
    licence: str
    """The licence or terms of use, as the source states them."""
    homepage: str
    """Where the dataset is described (and its licence stated)."""
    unpacks_to: tuple[str, ...]
    """The files and folders (relative to the dataset's folder) that the download leaves, archives unpacked."""
    train: str
    """The command that trains on it; ``{dir}`` stands for the dataset's folder."""
    remove: tuple[str, ...] = ()
    """Paths removed after unpacking (e.g. IMDB's unlabelled train/unsup, which a folder-per-class reader
    would take for a third class)."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"dataset name must be lowercase letters, digits and '-', got {self.name!r}")
        if self.task not in TASK_NAMES:
            raise ValueError(f"{self.name}: task must be one of {', '.join(TASK_NAMES)}, got {self.task!r}")
        if not self.files:
            raise ValueError(f"{self.name}: a dataset needs at least one file")
        names = [f.filename for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: two files share a name ({', '.join(names)})")
        for field_name in ("description", "licence", "homepage"):
            if not getattr(self, field_name).strip():
                raise ValueError(f"{self.name}: {field_name} must not be empty")
        if not self.unpacks_to:
            raise ValueError(f"{self.name}: unpacks_to must name the files the download leaves")
        for path in (*self.unpacks_to, *self.remove):
            _relative(path, f"{self.name}: unpacks_to/remove entry")
        if not self.train.startswith(f"rnnlab train {self.task} ") or "{dir}" not in self.train:
            raise ValueError(f"{self.name}: train must be 'rnnlab train {self.task} ... {{dir}}/...', "
                             f"got {self.train!r}")

    @property
    def size(self) -> Optional[int]:
        """Bytes to download; None when a file's size is not known."""
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)

    @property
    def verifiable(self) -> bool:
        """Whether every file has a stated checksum."""
        return all(f.sha256 is not None for f in self.files)

    def train_command(self, folder: str) -> str:
        """The train command with the dataset's folder filled in."""
        return self.train.replace("{dir}", folder)


def _files(base: str, checksum_source: str, rows: tuple[tuple[str, str, int], ...]) -> tuple[RemoteFile, ...]:
    """Files ``base + name`` with their (name, sha256, size) rows, all stated in one checksum list."""
    return tuple(RemoteFile(base + name, sha, size, checksum_source=checksum_source) for name, sha, size in rows)


_TFDS = "tensorflow/datasets:tensorflow_datasets"
_HF = "huggingface/datasets:datasets"

DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset(
        name="imdb",
        task="classify",
        description="Large Movie Review Dataset v1.0 (Maas et al., 2011): 25,000 training and 25,000 test movie "
                    "reviews, balanced positive/negative, one review per .txt file in a folder per label.",
        files=(RemoteFile(
            url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
            sha256="c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe", size=84125825,
            checksum_source=f"{_TFDS}/datasets/imdb_reviews/checksums.tsv (and {_HF}/imdb/dataset_infos.json), "
                            "stated for the http:// form of this URL, which redirects to it"),),
        licence="no licence stated; free for research, cite Maas et al. (ACL 2011); the reviews come from IMDb",
        homepage="https://ai.stanford.edu/~amaas/data/sentiment/",
        unpacks_to=("aclImdb_v1.tar.gz", "aclImdb/train/pos", "aclImdb/train/neg", "aclImdb/test/pos",
                    "aclImdb/test/neg", "aclImdb/imdb.vocab", "aclImdb/README"),
        remove=("aclImdb/train/unsup", "aclImdb/train/urls_unsup.txt", "aclImdb/train/unsupBow.feat"),
        train="rnnlab train classify --data {dir}/aclImdb/train --test_data {dir}/aclImdb/test",
    ),
    Dataset(
        name="ag-news",
        task="classify",
        description="AG's News topic classification (Zhang et al., 2015): 120,000 training and 7,600 test news "
                    "items in 4 classes (1 World, 2 Sports, 3 Business, 4 Sci/Tech); CSV without a header: "
                    "class index, title, description.",
        files=_files("https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/",
                     f"{_HF}/ag_news/dataset_infos.json", (
            ("train.csv", "76a0a2d2f92b286371fe4d4044640910a04a803fdd2538e0f3f29a5c6f6b672e", 29470338),
            ("test.csv", "521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699", 1857427),
        )),
        licence="non-commercial research use (the AG corpus terms: 'data mining ... and any other non-commercial "
                "activity')",
        homepage="http://groups.di.unipi.it/~gulli/AG_corpus_of_news_articles.html",
        unpacks_to=("train.csv", "test.csv"),
        train="rnnlab train classify --data {dir}/train.csv --test_data {dir}/test.csv --text_column 1,2 "
              "--label_column 0",
    ),
    Dataset(
        name="wnut17",
        task="tag",
        description="WNUT 2017 Emerging and Rare Entities (Derczynski et al., 2017): named entities in tweets, "
                    "Reddit, YouTube and Stack Overflow text; 3,394 train, 1,009 dev, 1,287 test sentences; "
                    "token<TAB>BIO tag (person, location, group, creative-work, corporation, product), blank line "
                    "between sentences.",
        files=_files("https://raw.githubusercontent.com/leondz/emerging_entities_17/master/",
                     f"{_HF}/wnut_17/dataset_infos.json", (
            ("wnut17train.conll", "731820e13f71af324c6b55a1575ec2ce59fbaa2a0806f8f0400b98d56cd6a7a5", 493781),
            ("emerging.dev.conll", "e053b752b8155113ca66e7db08af5f2f5f43ab993694e4774f1ec5bad42312d8", 114749),
            ("emerging.test.annotated", "2aa79b764e56ec9264a1b30fdd9b70195bd00ff400b62edd8f399d5f13c178f0", 192425),
        )),
        licence="CC BY 4.0",
        homepage="https://github.com/leondz/emerging_entities_17",
        unpacks_to=("wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated"),
        train="rnnlab train tag --data {dir}/wnut17train.conll --valid_data {dir}/emerging.dev.conll "
              "--test_data {dir}/emerging.test.annotated",
    ),
    Dataset(
        name="ud-english-ewt",
        task="tag",
        description="Universal Dependencies English Web Treebank r2.7: 12,543 train, 2,002 dev, 2,077 test "
                    "sentences of web text in CoNLL-U (word form in column 2, universal POS tag in column 4).",
        files=_files("https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/r2.7/",
                     f"{_HF}/universal_dependencies/dataset_infos.json", (
            ("en_ewt-ud-train.conllu", "4e45f7b6f6d4e8d33e0ba7090fc37f2385a91711edb20d456d3fb5f45ac0fc28", 13469758),
            ("en_ewt-ud-dev.conllu", "57703dcd3b04c32dda6cb7c2a9d836daf65c2b9141a670163693d230b46559c8", 1711407),
            ("en_ewt-ud-test.conllu", "25ef2d6fe772b8f05be374e093693f14284ccdd870fc27a9295f7e5a0fc3253a", 1712757),
        )),
        licence="CC BY-SA 4.0",
        homepage="https://github.com/UniversalDependencies/UD_English-EWT",
        unpacks_to=("en_ewt-ud-train.conllu", "en_ewt-ud-dev.conllu", "en_ewt-ud-test.conllu"),
        train="rnnlab train tag --data {dir}/en_ewt-ud-train.conllu --valid_data {dir}/en_ewt-ud-dev.conllu "
              "--test_data {dir}/en_ewt-ud-test.conllu --token_column 1 --tag_column 3",
    ),
    Dataset(
        name="tatoeba-deu-eng",
        task="translate",
        description="Tatoeba sentence pairs as compiled by ManyThings.org (Anki deck): about 250,000 short "
                    "English<TAB>German pairs plus an attribution column. The file is updated from Tatoeba "
                    "regularly, so no fixed checksum exists: the download cannot verify it.",
        files=(RemoteFile(url="https://www.manythings.org/anki/deu-eng.zip", sha256=None, size=None),),
        licence="CC BY 2.0 FR (Tatoeba sentences; the third column names each sentence's authors)",
        homepage="https://www.manythings.org/anki/",
        unpacks_to=("deu-eng.zip", "deu.txt", "_about.txt"),
        train="rnnlab train translate --data {dir}/deu.txt --reverse true",
    ),
    Dataset(
        name="news-commentary-de-en",
        task="translate",
        description="News Commentary v14 German-English (WMT 2019 training data): about 338,000 sentence pairs "
                    "of opinion articles, German<TAB>English, one pair per line (a few lines have one side empty).",
        files=(RemoteFile(
            url="https://data.statmt.org/news-commentary/v14/training/news-commentary-v14.de-en.tsv.gz",
            sha256="8aaa98a77d38bd39dcbdbcb775f3b6c633700e4c10fd915cf3dc6b9bfd0f2dca", size=39390551,
            checksum_source=f"{_TFDS}/url_checksums/wmt19_translate.txt, stated for the http:// form of this URL"),),
        licence="no licence file; distributed by WMT (statmt.org) as training data for research",
        homepage="https://www.statmt.org/wmt19/translation-task.html",
        unpacks_to=("news-commentary-v14.de-en.tsv.gz", "news-commentary-v14.de-en.tsv"),
        train="rnnlab train translate --data {dir}/news-commentary-v14.de-en.tsv --empty_pairs skip "
              "--source_tokenizer bpe --target_tokenizer bpe",
    ),
    Dataset(
        name="tiny-shakespeare",
        task="textgen",
        description="tiny-shakespeare (Karpathy's char-rnn): 40,000 lines of Shakespeare's plays, 1.1 M "
                    "characters, one UTF-8 text file.",
        files=(RemoteFile(
            url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", size=1115394,
            checksum_source=f"{_TFDS}/datasets/tiny_shakespeare/checksums.tsv (and "
                            f"{_HF}/tiny_shakespeare/dataset_infos.json)"),),
        licence="public domain text (Shakespeare); the char-rnn repository is MIT-licensed",
        homepage="https://github.com/karpathy/char-rnn",
        unpacks_to=("input.txt",),
        train="rnnlab train textgen --data {dir}/input.txt",
    ),
)}


def names() -> tuple[str, ...]:
    """The dataset names, in registry order."""
    return tuple(DATASETS)


def get(name: str) -> Dataset:
    """The dataset called ``name``; a ValueError listing the names when there is none."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; the datasets are: {', '.join(DATASETS)} "
                         "('rnnlab datasets' lists them)")
    return DATASETS[name]
