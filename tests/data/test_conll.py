"""The CoNLL column reader: columns, sentence breaks, comments, -DOCSTART-, tag schemes, and bad files."""
import logging

import pytest

from rnnlab.data.conll import detect_scheme, read_conll, read_tagged
from rnnlab.data.errors import DataError


def write(tmp_path, text, name="data.conll", raw=None):
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(text, encoding="utf-8")
    return path


CONLL2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_reads_conll2003_columns_skipping_docstart(tmp_path):
    sentences = read_conll(write(tmp_path, CONLL2003))
    assert [s.tokens for s in sentences] == [("EU", "rejects", "German", "call", "."), ("Peter", "Blackburn")]
    assert sentences[0].tags == ("B-ORG", "O", "B-MISC", "O", "O")
    assert sentences[1].lines == (9, 10)
    pos = read_conll(write(tmp_path, CONLL2003), tag_column=1)
    assert pos[0].tags == ("NNP", "VBZ", "JJ", "NN", ".")
    chunks = read_conll(write(tmp_path, CONLL2003), token_column=0, tag_column=2)
    assert chunks[1].tags == ("B-NP", "I-NP")


def test_tabs_comments_conllu_and_the_pound_sign_token(tmp_path):
    conllu = ("# sent_id = 1\n# text = Où est le £ ?\n"
              "1-2\tOù\t_\t_\t_\t_\t_\t_\t_\t_\n"
              "1\tOù\toù\tADV\t_\t_\t_\t_\t_\t_\n2\test\têtre\tVERB\t_\t_\t_\t_\t_\t_\n"
              "3\tle £\tle\tNOUN\t_\t_\t_\t_\t_\t_\n\n")
    sentences = read_conll(write(tmp_path, conllu), token_column=1, tag_column=3)
    assert sentences[0].tokens == ("Où", "est", "le £") and sentences[0].tags == ("ADV", "VERB", "NOUN")
    # '#<TAB>#' is the token '#' with the Penn tag '#' (as in the OANC file), not a comment
    pos = read_conll(write(tmp_path, "costs\tVBZ\n#\t#\n5\tCD\n\n#\t#\nok\tJJ\n"))
    assert pos[0].tokens == ("costs", "#", "5") and pos[1].tags == ("#", "JJ")


def test_scheme_detection():
    assert detect_scheme(["O", "B-PER", "I-PER"]) == "bio"
    assert detect_scheme(["O", "I-PER", "I-LOC"]) == "bio"  # IOB1
    assert detect_scheme(["O", "S-PER", "B-LOC", "E-LOC"]) == "bioes"
    assert detect_scheme(["NN", "DT", "."]) == "plain"
    assert detect_scheme(["O", "O"]) == "plain"
    assert detect_scheme(["B-NP", "I-NP", "MISC"]) == "plain"


def test_iob1_and_broken_bio_become_iob2_with_a_warning(tmp_path, caplog):
    text = "Peter I-PER\nBlackburn I-PER\nin O\nBonn I-LOC\n\nEU B-ORG\nX I-LOC\n"
    with caplog.at_level(logging.WARNING, logger="rnnlab"):
        sentences, scheme = read_tagged(write(tmp_path, text))
    assert scheme == "bio"
    assert sentences[0].tags == ("B-PER", "I-PER", "O", "B-LOC")
    assert sentences[1].tags == ("B-ORG", "B-LOC")  # I-LOC after B-ORG begins a LOC
    assert "data.conll:1: 3 I- tag(s) begin an entity" in caplog.text


def test_invalid_bioes_is_an_error_with_the_line(tmp_path):
    with pytest.raises(DataError, match=r"data.conll:3: BIOES tag 'E-LOC' cannot follow 'B-PER'"):
        read_tagged(write(tmp_path, "A S-PER\nB B-PER\nC E-LOC\n"))
    with pytest.raises(DataError, match=r"data.conll:2: the sentence ends inside an entity"):
        read_tagged(write(tmp_path, "A S-PER\nB B-PER\n\nC O\n"))
    assert read_tagged(write(tmp_path, "A S-PER\nB B-PER\nC E-PER\n"))[1] == "bioes"


def test_a_tag_that_does_not_fit_the_chosen_scheme(tmp_path):
    with pytest.raises(DataError, match=r"data.conll:2: tag 'MISC' is not O or B/I-TYPE"):
        read_tagged(write(tmp_path, "A B-PER\nB MISC\n"), scheme="bio")
    with pytest.raises(ValueError, match="--tag_scheme must be one of"):
        read_tagged(write(tmp_path, "A O\n"), scheme="iob")


@pytest.mark.parametrize("text,raw,message", [
    ("", None, r"data.conll: the CoNLL file is empty"),
    ("\n\n  \n", None, r"data.conll: the CoNLL file is empty"),
    ("-DOCSTART- O\n\n# only a comment here\n", None, r"data.conll: no sentences"),
    ("EU B-ORG\nrejects\n", None, r"data.conll:2: this line has 1 column\(s\); --token_column 0 and --tag_column -1 need at least 2"),
    (None, "EU O\nM\xfcnchen B-LOC\n".encode("latin-1"), r"data.conll:2: not UTF-8 text \(byte 0xfc"),
])
def test_bad_files_name_the_file_line_and_problem(tmp_path, text, raw, message):
    with pytest.raises(DataError, match=message):
        read_conll(write(tmp_path, text, raw=raw))


def test_too_few_columns_for_a_configured_column(tmp_path):
    with pytest.raises(DataError, match=r":1: this line has 2 column\(s\); --token_column 0 and --tag_column 3 need at least 4"):
        read_conll(write(tmp_path, "EU B-ORG\n"), tag_column=3)
    with pytest.raises(FileNotFoundError, match="CoNLL file not found"):
        read_conll(tmp_path / "missing.conll")
