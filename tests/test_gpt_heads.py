"""GPT-1 task heads: the acceptability task without surface cues, the speaker task held out by speech, the heads
(last token, mean), the auxiliary LM loss, the three variants, the validation split of the recipe."""

from __future__ import annotations

import random

import pytest
import torch

from models.text.gpt import GPT, GPTConfig
from models.text.heads import SequenceHead, ValueHead, last_hidden, mean_hidden
from models.text.tokenizers import CharTokenizer
from seqcast.gpt_config import HeadsParams
from tasks.text import heads

PLAY = "\n\n".join(
    [f"ROMEO:\nBut soft, what light {i}\nthrough yonder window" for i in range(6)]
    + [f"JULIET:\nO Romeo, Romeo {i}" for i in range(3)]
    + ["NURSE:\nAnon, anon!"]
) + "\n"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors, one thread


def test_speeches_and_the_split_by_speech():
    sp = heads.speeches(PLAY)
    assert len(sp) == 10 and sp[0] == ("ROMEO", ["But soft, what light 0", "through yonder window"])
    task = heads.speaker_task(PLAY, n_speakers=2, test_fraction=0.3, seed=0)
    assert task["speakers"] == ["ROMEO", "JULIET"]  # NURSE is not among the 2 most frequent
    lines = lambda part: {ln for ln, _ in task[part] if ln != "through yonder window"}  # noqa: E731
    assert not lines("train") & lines("test")  # no line (speech) on both sides
    n_test_speeches = sum(1 for ln, _ in task["test"] if ln.startswith(("But", "O Romeo")))
    assert n_test_speeches == int(9 * 0.3)
    # a speech's lines stay together: both ROMEO lines of a held-out speech are in test
    assert sum(ln == "through yonder window" for ln, _ in task["test"]) == sum(ln.startswith("But") for ln, _ in task["test"])


def test_majority_baseline_known_answer():
    assert heads.majority_accuracy(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1, 0])) == 0.5


def test_last_hidden_reads_each_rows_last_real_token_and_padding_does_not_change_it():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=1, n_head=2, n_embd=8)).eval()
    x = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
    h = last_hidden(gpt.hidden(x), torch.tensor([3, 5]))
    assert torch.allclose(h[0], gpt.hidden(x[:1, :3])[0, -1], atol=1e-6)  # causal: the right padding is invisible
    logits, _ = gpt(x[:1, :3])
    assert torch.allclose(gpt.lm_head(gpt.hidden(x[:1, :3]))[:, -1], logits[:, -1], atol=1e-5)  # same as forward
    assert ValueHead(8)(gpt.hidden(x)).shape == (2, 5)


def test_head_loss_adds_lambda_times_the_lm_loss():
    torch.manual_seed(0)
    model = SequenceHead(GPT(GPTConfig(block_size=8, vocab_size=7, n_layer=1, n_head=1, n_embd=8)), 3)
    x, lengths, y = torch.tensor([[1, 2, 3, 0]]), torch.tensor([3]), torch.tensor([2])
    task_only = heads.head_loss(model, x, lengths, y, 0.0)
    both = heads.head_loss(model, x, lengths, y, 0.5)
    logits = model.gpt.lm_head(model.gpt.hidden(x))
    lm = torch.nn.functional.cross_entropy(logits[0, :2], torch.tensor([2, 3]))  # next chars inside the line only
    assert torch.allclose(both, task_only + 0.5 * lm, atol=1e-5)


def test_the_three_variants_and_the_baseline_on_a_tiny_play():
    text = "\n\n".join(f"{'ROMEO' if i % 2 else 'JULIET'}:\n{'ab' * (1 + i % 3) if i % 2 else 'xy' * (1 + i % 3)}"
                       for i in range(80)) + "\n"
    tok = CharTokenizer.train(text)
    torch.manual_seed(0)
    base = GPT(GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16))
    hp = HeadsParams(task="speaker", n_speakers=2, max_chars=8, iters=40, batch_size=8, linear_iters=100,
                     finetune_lr=3e-3)
    res = heads.run_variants(base, tok, heads.make_task(text, hp, 0), hp, seed=0)
    assert set(res) >= {"majority", "linear", "finetune", "scratch"} and res["classes"] == ["JULIET", "ROMEO"]
    assert res["finetune"] == 1.0 and res["scratch"] == 1.0  # 'ab' vs 'xy' lines: trivially separable
    assert res["majority"] <= 0.6


def shakespeare_like(n_lines: int, seed: int = 0) -> str:
    """Verse-like lines: a capital at the start, names inside, commas, most lines ending with a mark."""
    rng = random.Random(seed)
    vocab = ["love", "night", "sweet", "good", "the", "of", "my", "lord", "and", "thou", "art", "fair", "what",
             "light", "through", "yonder", "window", "breaks", "heaven", "Romeo", "Juliet", "I", "o'er", "'tis"]
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(vocab) for _ in range(rng.randint(4, 9))]
        words = [w + "," if rng.random() < 0.15 else w for w in words]
        line = " ".join(words)
        lines.append(line[0].upper() + line[1:] + rng.choice([".", ",", ";", "!", "?", ":", ""]))
    return "\n".join(lines) + "\n"


def test_surface_rules_known_answer():
    pairs = [("Good morrow, sir.", 1), ("Sir morrow, good.", 0), ("the night is  dark", 1), ("Dark is the night", 0)]
    r = heads.surface_rules(pairs)  # each rule answers "as written" (1) when it holds
    assert r["last_char_punctuation"] == 0.5  # holds on lines 1, 2: right on 1 and 4
    assert r["first_char_capital"] == 0.25  # holds on 1, 2, 4: right on 1 only
    assert r["no_capital_inside"] == 0.5  # holds on all four: right on the two as written
    assert r["single_spaces"] == 0.25  # holds on 1, 2, 4: right on 1 only


def test_the_old_shuffle_leaked_the_line_ends_and_the_new_one_does_not():
    text = shakespeare_like(3000)
    old = []  # the task before: the line as written against its whitespace tokens shuffled, marks moving with them
    rng = random.Random(0)
    for line in text.split("\n")[:-1]:
        words = line.split()
        mixed = words[:]
        while mixed == words and len(set(words)) > 1:
            rng.shuffle(mixed)
        old.append((line, 1) if rng.random() < 0.5 else (" ".join(mixed), 0))
    leak = heads.surface_rules(old)
    assert leak["first_char_capital"] > 0.75 and leak["last_char_punctuation"] > 0.6  # the line's ends told the class
    task = heads.acceptability_task(text, seed=1)
    for part in ("train", "test"):
        for rule, acc in heads.surface_rules(task[part]).items():
            assert abs(acc - 0.5) < 0.06, (part, rule, acc)  # near chance: only the order of the words tells


def test_shuffle_words_keeps_the_layout_and_moves_only_the_words():
    lower = heads.lower_words("but soft what light through yonder window breaks romeo's\n")
    rng = random.Random(3)
    line = "But soft, what light through yonder window breaks?"
    layout = lambda s: [(a, b) for a, _, b in heads.layout_words(s)[0]]  # noqa: E731
    for _ in range(20):
        mixed = heads.shuffle_words(line, rng, lower)
        assert mixed != line and layout(mixed) == layout(line)  # the comma in slot 2, the "?" at the end
        assert mixed[0].isupper() and mixed.endswith("?") and "," in mixed
        assert sorted(heads.layout_words(mixed.lower())[0]) != [] and \
            sorted(w.lower() for _, w, _ in heads.layout_words(mixed)[0]) == sorted(
                w.lower() for _, w, _ in heads.layout_words(line)[0])  # the same words
        assert not any(c.isupper() for c in mixed[1:])  # "But" lower-cased when it leaves the line start
    # a name keeps its capital where it goes, an apostrophe stays inside its word, one word repeated: no other order
    lower |= {"wherefore", "art", "thou"}
    mixed = heads.shuffle_words("O Romeo, Romeo! wherefore art thou Romeo?", random.Random(0), lower)
    assert mixed.count("Romeo") == 3 and mixed.startswith(("O", "Romeo", "Wherefore", "Art", "Thou"))
    assert heads.shuffle_words("No, no, no, no!", rng, {"no"}) is None


def test_acceptability_task_shuffles_half_the_lines_and_tests_on_the_unseen_text():
    from tasks.text.corpus import split_text

    name = lambda i: "".join(chr(97 + int(d)) for d in str(i))  # noqa: E731  (a word of letters per line)
    lines = [f"Line {name(i)} of the line is here." for i in range(400)]
    text = "\n".join(lines) + "\n"
    task = heads.acceptability_task(text, seed=1)
    train_text, val_text = split_text(text)
    assert task["classes"] == ["shuffled", "as written"]
    assert all(line in val_text for line, y in task["test"] if y == 1)  # test lines: the P3 validation part
    assert not set(train_text.split("\n")) & {line for line, y in task["test"]}  # no train line is a test line
    ys = [y for _, y in task["train"] + task["test"]]
    assert 0.4 < sum(ys) / len(ys) < 0.6
    for line, y in task["train"][:50]:
        if y == 0:  # the same words in another order, the capital and the full stop where they were
            assert line not in lines and line[0].isupper() and line.endswith(".")
            assert "Line" not in line[1:]  # the line-start capital stays at the start, not with its word
            assert sorted(line.lower().rstrip(".").split()) in [sorted(x.lower().rstrip(".").split()) for x in lines]


def test_the_corpus_task_has_no_surface_cue():
    from tasks.text.corpus import corpus_path, load_corpus

    if not corpus_path().exists():
        pytest.skip("no corpus (the ingest_text stage writes it)")
    task = heads.acceptability_task(load_corpus(), seed=1)
    assert len(task["test"]) > 2000
    for rule, acc in heads.surface_rules(task["test"]).items():
        assert abs(acc - 0.5) < 0.04, (rule, acc)


def test_validation_split_is_carved_from_the_training_lines():
    task = {"classes": ["a", "b"], "train": [(f"t{i}", i % 2) for i in range(50)], "test": [("x", 0)]}
    v = heads.validation_task(task, 10, seed=4)
    assert len(v["test"]) == 10 and len(v["train"]) == 40
    assert set(v["test"]) | set(v["train"]) == set(task["train"]) and not set(v["test"]) & set(v["train"])
    assert ("x", 0) not in v["test"] + v["train"]  # the test lines are never touched
    assert v["test"] == heads.validation_task(task, 10, seed=4)["test"]  # seeded


def test_mean_hidden_averages_the_real_tokens_only():
    h = torch.arange(2 * 3 * 2, dtype=torch.float).view(2, 3, 2)
    m = mean_hidden(h, torch.tensor([2, 3]))
    assert torch.equal(m, torch.tensor([[1.0, 2.0], [8.0, 9.0]]))  # row 0: mean of (0,1) and (2,3); row 1: all three
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=8, vocab_size=7, n_layer=1, n_head=1, n_embd=8)).eval()
    head = SequenceHead(gpt, 2, pool="mean").eval()
    x = torch.tensor([[1, 2, 3, 0, 0]])
    assert torch.allclose(head(x, torch.tensor([3])), head(x[:, :3], torch.tensor([3])), atol=1e-6)  # padding unseen
    with pytest.raises(ValueError, match="pool"):
        SequenceHead(gpt, 2, pool="max")


def test_iterations_follow_the_labelled_lines():
    hp = HeadsParams(batch_size=32, epochs=10, min_iters=30, iters=150)
    assert [heads.iterations(n, hp) for n in (50, 200, 1000, 3000)] == [30, 63, 150, 150]


def test_learning_curve_has_a_row_per_size_and_seed():
    text = "\n".join(f"one two three four five {i}" for i in range(300)) + "\n"
    tok = CharTokenizer.train(text)
    torch.manual_seed(0)
    base = GPT(GPTConfig(block_size=32, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16))
    hp = HeadsParams(max_chars=24, iters=3, min_iters=2, linear_iters=3, batch_size=8)
    rows = heads.learning_curve(base, tok, text, hp, sizes=[10, 40], seeds=[1, 2], variants=("finetune",))
    assert [(r["seed"], r["n_train"]) for r in rows] == [(1, 10), (1, 40), (2, 10), (2, 40)]
    assert all("finetune" in r and "scratch" not in r for r in rows)


def test_line_logprobs_is_the_sum_of_each_characters_log_probability_after_the_opening_newline():
    text = "abc ab\nba cab\n"
    tok = CharTokenizer.train(text)
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=8)).eval()
    got = heads.line_logprobs(gpt, tok, ["abc ab", "ba"], max_chars=4)
    for line, value in zip(["abc ", "ba"], got):  # max_chars=4: "abc ab" is read as "abc " and its newline
        ids = torch.tensor([tok.encode("\n" + line + "\n")])
        logp = torch.log_softmax(gpt.lm_head(gpt.hidden(ids[:, :-1])), -1)
        want = logp[0, torch.arange(ids.size(1) - 1), ids[0, 1:]].sum()
        assert abs(value.item() - want.item()) < 1e-4


def memorised_verse() -> tuple[str, GPT, CharTokenizer]:
    """Twelve lines repeated, and a tiny GPT trained on them until it knows their word order."""
    verse = ["the king is dead and gone", "my lord the night is cold", "a horse for my good kingdom",
             "sweet love will come to thee", "the sun doth rise at dawn", "o gentle heart be still",
             "we go to war this night", "her eyes are bright as stars", "the crown is heavy now",
             "what light is in the window", "a fool would speak of gold", "thy word is all I have"]
    text = "\n".join(verse * 40) + "\n"
    tok = CharTokenizer.train(text)
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=32, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=32))
    data = torch.tensor(tok.encode(text))
    opt = torch.optim.AdamW(gpt.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        ix = torch.randint(len(data) - 33, (16,), generator=g)
        x = torch.stack([data[i : i + 32] for i in ix])
        y = torch.stack([data[i + 1 : i + 33] for i in ix])
        loss = torch.nn.functional.cross_entropy(gpt.lm_head(gpt.hidden(x)).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return text, gpt.eval(), tok


def test_the_likelihood_features_tell_a_line_from_its_shuffles_to_a_model_that_knows_the_order():
    text, gpt, tok = memorised_verse()
    lines = ["the king is dead and gone", "my lord the night is cold"]
    lower = heads.lower_words(text)
    shuffled = [heads.shuffle_words(line, random.Random(i), lower) for i, line in enumerate(lines)]
    f = heads.likelihood_features(gpt, tok, lines + shuffled, lower, reshuffles=4, max_chars=64, seed=0)
    assert f.shape == (4, 2)
    assert (f[:2, 1] > 5).all()  # many nats likelier than orders of the same words
    assert (f[:2, 0] > f[2:, 0]).all()  # and likelier per character than those lines shuffled
    assert f[2:, 1].abs().max() < f[:2, 1].min()  # a shuffled line is one of its orders: no such margin
    torch.manual_seed(1)
    random_net = GPT(GPTConfig(block_size=32, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=32)).eval()
    g = heads.likelihood_features(random_net, tok, lines, lower, reshuffles=4, max_chars=64, seed=0)
    assert g[:, 1].abs().max() < f[:2, 1].min() / 4  # a network that knows nothing: next to no margin


def test_the_likelihood_heads_read_what_pretraining_knows_and_the_scratch_network_does_not():
    text, gpt, tok = memorised_verse()
    hp = HeadsParams(max_chars=32, iters=30, min_iters=30, batch_size=8, linear_iters=200, linear_lr=0.05,
                     finetune_lr=1e-4, reshuffles=4)
    task = heads.acceptability_task(text, seed=0)
    res = heads.run_variants(gpt, tok, task, hp, seed=0, n_train=20, lower=heads.lower_words(text))
    assert set(res) >= {"linear", "finetune", "scratch", "score", "score_finetune", "score_scratch"}
    assert res["score"] >= 0.95 and res["score_finetune"] >= 0.9  # the order of memorised lines is known
    assert res["score_scratch"] <= 0.75  # 30 steps on 20 lines from a random start know next to nothing
    with pytest.raises(ValueError, match="lower"):
        heads.run_variants(gpt, tok, task, hp, seed=0, n_train=20, variants=("score",))
    speaker = {"classes": ["A", "B"], "train": task["train"], "test": task["test"]}
    assert "score" not in heads.run_variants(gpt, tok, speaker, hp, seed=0, n_train=20, variants=None)


def test_the_bench_table_shows_both_gains():
    from benchmarks.gpt_heads import aggregate, markdown

    rows = [{"n_train": 50, "majority": 0.5, "finetune": 0.52, "scratch": 0.5, "score": 0.8, "score_finetune": 0.7,
             "score_scratch": 0.5, "seed": s} for s in (1, 2)]
    agg = aggregate(rows)
    assert agg[0]["gain"] == pytest.approx(0.02) and agg[0]["score_gain"] == pytest.approx(0.2)
    md = markdown(agg)
    assert "likelihood: pretrained - scratch" in md and "+0.200" in md and "| 50 |" in md


def test_the_bench_plot_is_an_svg_with_its_text_and_no_date(tmp_path):
    from benchmarks.gpt_heads import aggregate, plot

    rows = [{"n_train": n, "majority": 0.5, "finetune": 0.5 + n / 1e4, "scratch": 0.5, "score": 0.85,
             "score_finetune": 0.6, "score_scratch": 0.5, "seed": 1} for n in (50, 200)]
    plot(aggregate(rows), tmp_path / "a.svg", "curve")
    plot(aggregate(rows), tmp_path / "b.svg", "curve")
    svg = (tmp_path / "a.svg").read_text()
    assert "likelihood head, frozen" in svg and "labelled lines" in svg  # text, not glyph paths
    assert svg == (tmp_path / "b.svg").read_text()  # the same bytes each time: no date, fixed ids
