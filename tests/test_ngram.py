"""The ladder's classical rungs: proper distributions, sensible ordering, tuning on held-out train."""

import math

import pytest

from models.text.ngram import AddKUnigram, KneserNey, ladder

TEXT = ("the cat sat on the mat. the dog sat on the log. " * 40) + "a cat and a dog met on a mat. " * 20
VOCAB = sorted(set(TEXT) | {"z", "Q"})


@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("history", ["", "th", "the c", "zzQQ"])
def test_kneser_ney_is_a_distribution(order, history):
    m = KneserNey(VOCAB, order).fit(TEXT)
    probs = [m.prob(history, c) for c in VOCAB]
    assert min(probs) > 0  # smoothing: unseen characters keep some mass
    assert math.isclose(sum(probs), 1.0, rel_tol=1e-9)


def test_add_k_unigram_loss_matches_formula():
    m = AddKUnigram(VOCAB, k=1.0).fit("aab")
    V = len(VOCAB)
    expected = -(math.log(3 / (3 + V)) + math.log(2 / (3 + V))) / 2
    assert math.isclose(m.loss("ab"), expected)


def test_higher_orders_help_on_repetitive_text():
    train, val = TEXT[:2000], TEXT[2000:2600]
    losses = [KneserNey(VOCAB, n).fit(train).loss(val, train) for n in (1, 2, 4)]
    assert losses[0] > losses[1] > losses[2]


def test_ladder_rows_in_nats_per_char():
    rows = ladder(TEXT[:2400], TEXT[2400:], VOCAB, kn_orders=[3, 4])
    assert [r["model"] for r in rows][:2] == ["unigram", "bigram"]
    assert rows[0]["val_loss"] > rows[1]["val_loss"] > rows[2]["val_loss"]
    assert all(math.isclose(r["perplexity"], math.exp(r["val_loss"])) for r in rows)
