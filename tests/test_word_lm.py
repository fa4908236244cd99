"""Word unigram and bigram models: the lecture's point (order matters only from the bigram on), proper scores."""

import math
import random

import pytest

from models.text.word_lm import WordBigram, WordUnigram, histories, tokenize, words
from tasks.text.corpus import load_corpus, split_text


@pytest.fixture(scope="module")
def corpus(mirror):
    return split_text(load_corpus(mirror / "text" / "tinyshakespeare.txt"))


@pytest.fixture(scope="module")
def models(corpus):
    train, _ = corpus
    return WordUnigram().fit(train), WordBigram().fit(train)


def test_tokens_cover_every_character():
    text = "ROMEO:\n  What's this?  O, 'tis\tnothing!"
    assert "".join(tokenize(text)) == text
    assert words("What's this?") == ["What's", "this", "?"]
    assert histories(["a", " ", "b", " ", "c"]) == [None, "a", "a", "b", "b"]  # white space is never a context


def test_grammatical_lines_score_higher_than_their_scrambles(corpus, models):
    """Lines of the validation text (never seen in training) against the same words shuffled."""
    _, val = corpus
    uni, bi = models
    lines = [ln for ln in val.splitlines() if len(words(ln)) >= 6][:200]
    rng = random.Random(0)
    wins = 0
    for ln in lines:
        w = words(ln)
        s = w[:]
        while s == w:
            rng.shuffle(s)
        assert math.isclose(uni.sequence_probability(w), uni.sequence_probability(s), rel_tol=1e-12)  # a bag of words
        wins += bi.sequence_probability(w) > bi.sequence_probability(s)
    assert wins / len(lines) > 0.9  # the bigram knows which word follows which (measured: 187 of 200)


def test_bigram_beats_unigram_and_both_are_proper_in_nats_per_char(corpus, models):
    train, val = corpus
    uni, bi = models
    lu, lb = uni.loss(val[:20000]), bi.loss(val[:20000], train)
    assert 1.5 < lb < lu < 3.5
    # an unseen word still has a probability (spelled out) and the known word is likelier than its misspelling
    assert math.isfinite(bi.logp("Zyzzogeton", "the")) and bi.logp("king", "the") > bi.logp("kign", "the")


def test_bigram_is_a_distribution_over_the_vocabulary():
    bi = WordBigram().fit("the cat sat on the mat . the dog sat on the log .\n" * 5)
    for prev in ("the", "sat", None, "unseen"):
        known = sum(math.exp(bi.logp(w, prev)) for w in bi.counts if w != "<unk>")
        assert 0.9 < known <= 1.0 + 1e-9  # the rest is the <unk> event's share
