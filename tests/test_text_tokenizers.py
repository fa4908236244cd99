"""Tokenizers: round trips on arbitrary Unicode (Korean included), special tokens, JSON save/load."""

import json

import pytest

from models.text.tokenizers import CHATML_SPECIALS, IM_END, IM_START, BPETokenizer, CharTokenizer, load_tokenizer

CORPUS = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 50
SAMPLES = [
    "hear me speak",
    "안녕하세요, 세계! 한국어 문장도 그대로 돌아옵니다.",
    "emoji 🙂🚀, accents café naïve, CJK 漢字, tabs\tand\nnewlines  double  spaces ",
    "",
    "\x00 control \u200b zero-width",
]


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(CORPUS, vocab_size=300)


def test_char_round_trip_on_its_alphabet():
    tok = CharTokenizer.train(CORPUS)
    assert tok.decode(tok.encode("hear me speak")) == "hear me speak"
    with pytest.raises(KeyError):
        tok.encode("한")  # no byte fallback: unknown characters are an error, not silently dropped


@pytest.mark.parametrize("text", SAMPLES)
def test_char_with_byte_fallback_round_trips_any_unicode(text):
    tok = CharTokenizer.train(CORPUS, byte_fallback=True)
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("text", SAMPLES)
def test_bpe_round_trips_any_unicode(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_compresses_the_corpus(bpe):
    assert len(bpe.encode(CORPUS)) < 0.5 * len(CORPUS)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_chatml_specials_are_single_tokens_and_survive_save_load(tmp_path, bpe, kind):
    tok = CharTokenizer.train(CORPUS, byte_fallback=True) if kind == "char" else bpe
    ids = tok.add_special_tokens(CHATML_SPECIALS)
    text = f"{IM_START}user\n안녕 hear{IM_END}\n"
    enc = tok.encode(text)
    assert enc[0] == ids[0] and ids[1] in enc
    assert tok.decode(enc) == text
    assert tok.decode(enc, skip_special=True) == "user\n안녕 hear\n"
    tok.save(tmp_path / "tok.json")
    assert json.loads((tmp_path / "tok.json").read_text())["kind"] == kind  # plain JSON, no pickle
    again = load_tokenizer(tmp_path / "tok.json")
    assert again.encode(text) == enc and again.vocab_size == tok.vocab_size


def test_char_add_chars_keeps_existing_ids():
    tok = CharTokenizer.train("abc", byte_fallback=True)
    before = tok.encode("cab")
    tok.add_chars("xyz0")
    assert tok.encode("cab") == before and tok.decode(tok.encode("zx0")) == "zx0"


# ----------------------------------------------------------------- the chat's word tokenizer with copy slots

from models.text.word_tokenizer import WordTokenizer, pieces, shape  # noqa: E402


def word_tok() -> WordTokenizer:
    return WordTokenizer.train(["What is the P1 of the model on?", "The value is", "{\"tool\":\"metric\"}"], 4,
                               CHATML_SPECIALS)


def test_pieces_split_words_punctuation_and_the_trailing_period():
    assert pieces("Is ^KS11 stationary?") == [(False, "Is"), (True, "^KS11"), (True, "stationary"), (False, "?")]
    assert pieces("It is 1.53.") == [(False, "It"), (True, "is"), (True, "1.53"), (False, ".")]
    assert pieces('{"d":1}') == [(False, "{"), (False, '"'), (False, "d"), (False, '"'), (False, ":"), (False, "1"),
                                 (False, "}")]
    assert [p for _, p in pieces("arima's P2a_mase at 2015-01-01 03:00")] == ["arima", "'s", "P2a_mase", "at",
                                                                              "2015-01-01", "03:00"]
    assert [shape(p) for p in ("2015-01-01", "-0.35", "us_embassy", "^KS11", "Dongsi")] == ["num", "num", "low",
                                                                                           "other", "other"]


def test_unknown_pieces_are_copy_slots_numbered_by_first_appearance():
    t = word_tok()
    slots: list[str] = []
    q = t.encode("What is the P2a_mase of arima on ^KS11?", slots=slots)
    assert slots == ["P2a_mase", "arima", "^KS11"]
    a = t.encode("The value is 1.53 of arima", slots=slots)
    assert slots == ["P2a_mase", "arima", "^KS11", "1.53"]
    assert a[-1] == q[5] and t.is_slot(a[-1])  # " arima" again: the same slot
    assert t.decode(q + a, slots=slots) == "What is the P2a_mase of arima on ^KS11?The value is 1.53 of arima"
    full: list[str] = []
    ids = t.encode("The value is 9 8 7 6 5 9", slots=full)  # 4 slots: the fifth distinct number has none
    assert full == ["9", "8", "7", "6"] and t.decode(ids, slots=full) == "The value is 9 8 7 6 <unk> 9"


def test_numbers_are_never_words_and_known_words_keep_their_ids_in_any_case():
    t = WordTokenizer.train(["the 2019 value", "THE end"], 8)
    assert "2019" not in t.words and "the" in t.words
    assert t.encode("The", slots=[]) == t.encode("the", slots=[])  # a known word in another case
    t2 = load_tokenizer_json(t)
    assert t2.itos == t.itos and t2.decode(t2.encode("the x y", slots=(s := [])), slots=s) == "the x y"


def load_tokenizer_json(t):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        t.save(Path(d) / "tok.json")
        return load_tokenizer(Path(d) / "tok.json")
