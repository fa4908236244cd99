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
