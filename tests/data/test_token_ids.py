"""Token ids on disk: chunked encoding equals whole encoding, the smallest dtype, the cache's reuse and rebuild."""
import numpy as np
import pytest

from rnnlab.data.text import TextSource, corpus_sources, pydoc_corpus, read_text_file
from rnnlab.data.token_ids import cache_key, cached_ids, smallest_dtype, whole_tokens
from rnnlab.data.tokenize import train_tokenizer

TEXT = "\n".join(d.text for d in pydoc_corpus()[:6])


@pytest.mark.parametrize("vocab_size,dtype", [(1, np.uint8), (256, np.uint8), (257, np.uint16),
                                              (65536, np.uint16), (65537, np.uint32)])
def test_smallest_dtype(vocab_size, dtype):
    assert smallest_dtype(vocab_size) == dtype


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_chunked_encoding_equals_whole(kind):
    if kind == "bpe":
        pytest.importorskip("tokenizers")
    chunks = list(whole_tokens(TextSource("t", text=TEXT).chunks(997), kind))
    assert "".join(chunks) == TEXT
    whole = train_tokenizer(kind, [TEXT], vocab_size=400)
    assert train_tokenizer(kind, chunks, vocab_size=400).to_json() == whole.to_json()
    assert [i for c in chunks for i in whole.encode(c)] == whole.encode(TEXT)


def test_streamed_file_equals_read_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbf" + ("ab\r\ncd\re\u00e9\u4e2d " * 300).encode("utf-8"))
    source = corpus_sources(path)[0]
    text = read_text_file(path).text
    for size in (1, 2, 7, 64):  # "\r\n" and multi-byte characters straddle the reads
        assert "".join(source.chunks(size)) == text
    assert source.num_chars() == len(text)
    assert "".join(source.piece(5, 400, 16)) == text[5:400]


def test_streamed_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\xff")
    with pytest.raises(ValueError, match="invalid byte at offset 3"):
        corpus_sources(bad)[0].num_chars()
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(ValueError, match="empty"):
        corpus_sources(empty)[0].num_chars()


def test_cache_is_reused_and_rebuilt(tmp_path):
    tokenizer = train_tokenizer("char", [TEXT])
    docs = [TEXT[:5000], TEXT[5000:5001], TEXT[5001:9000]]
    calls = []

    def documents():
        calls.append(1)
        return ([d[i:i + 300] for i in range(0, len(d), 300)] for d in docs)

    key = cache_key(data={"sha256": "a"}, tokenizer=tokenizer.to_json())
    ids = cached_ids(tmp_path, "train", key, tokenizer, documents)
    assert isinstance(ids.ids, np.memmap) and ids.ids.dtype == np.uint8  # < 256 characters
    assert (tmp_path / f"train.{key}.ids.u8").stat().st_size == len(TEXT[:9000])
    assert ids.lengths.tolist() == [5000, 1, 3999] and ids.starts.tolist() == [0, 5000, 5001]
    assert ids.chars == 9000 and ids.tokens == 9000
    assert ids.ids[5001:5101].tolist() == tokenizer.encode(docs[2][:100])
    cached_ids(tmp_path, "train", key, tokenizer, documents)
    assert len(calls) == 1  # reused
    other = cache_key(data={"sha256": "b"}, tokenizer=tokenizer.to_json())
    assert other != key
    cached_ids(tmp_path, "train", other, tokenizer, documents)
    assert len(calls) == 2  # a changed corpus builds a new entry and removes the old one
    assert sorted(p.name.split(".")[1] for p in tmp_path.iterdir()) == [other] * 3
