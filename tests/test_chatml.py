"""ChatML: template, assistant-only loss mask, the chat command."""

import json

import torch

from models.text.gpt import GPT, GPTConfig
from models.text.tokenizers import CHATML_SPECIALS, IM_END, CharTokenizer
from tasks.text import chatml

MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Who?"},
    {"role": "assistant", "content": "Romeo."},
    {"role": "user", "content": "And?"},
    {"role": "assistant", "content": "Juliet."},
]


def tok():
    t = CharTokenizer.train("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.?! \n", byte_fallback=True)
    t.add_special_tokens(CHATML_SPECIALS)
    return t


def test_template():
    assert chatml.render(MSGS[:2], add_generation_prompt=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWho?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_mask_covers_exactly_the_assistant_tokens():
    t = tok()
    ids, mask = chatml.encode_chat(MSGS, t)
    assert t.decode(ids) == chatml.render(MSGS)
    kept = [i for i, m in zip(ids, mask) if m]
    assert t.decode(kept) == f"Romeo.{IM_END}Juliet.{IM_END}"  # content + the closing token, nothing else
    x, y, m = chatml.to_example(ids, mask, block_size=128)
    assert t.decode(y[m].tolist()) == f"Romeo.{IM_END}Juliet.{IM_END}"  # mask is aligned with the targets
    assert (y[len(ids) - 1 :] == -1).all() and not m[len(ids) - 1 :].any()  # padding carries no loss


def test_sft_loss_ignores_non_assistant_tokens():
    t = tok()
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=128, vocab_size=t.vocab_size, n_layer=1, n_head=2, n_embd=16))
    x, y, m = (v[None] for v in chatml.to_example(*chatml.encode_chat(MSGS, t), 128))
    logits, loss = model(x, y, loss_mask=m)
    manual = torch.nn.functional.cross_entropy(logits[m], y[m])
    assert torch.allclose(loss, manual)
    logits2, loss2 = model(x, y, loss_mask=m)
    logits2.retain_grad()
    loss2.backward()
    assert logits2.grad[~m].abs().max() == 0  # system/user/padding positions get no gradient
    assert logits2.grad[m].abs().max() > 0


def test_chat_command_keeps_the_conversation(tmp_path, capsys):
    """`seqcast chat` (its main) with a tiny model that learnt the stationarity question: two turns, two right
    answers about names it never saw, the second turn reading the first."""
    from _tiny_chat import train_tiny_chat
    from flows.text_chat_session import main

    train_tiny_chat(tmp_path / "chat")
    (tmp_path / "reports" / "stationarity").mkdir(parents=True)
    (tmp_path / "reports" / "stationarity" / "any.json").write_text(json.dumps(
        {"^KS11": {"verdict": "difference-stationary", "d": 1}, "Dongsi": {"verdict": "stationary", "d": 0}}))
    rc = main(["--checkpoint", str(tmp_path / "chat"), "--reports", str(tmp_path / "reports"),
               "--once", "Is ^KS11 stationary?", "--once", "Is Dongsi stationary?"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert [ln for ln in out if ln.startswith("assistant>")] == [
        "assistant> The verdict for ^KS11 is difference-stationary.", "assistant> The verdict for Dongsi is stationary."]
    assert 'tool> {"verdict":"stationary","d":0}' in out


def test_word_chat_encoding_copies_names_and_results_and_decodes_back():
    """The word tokenizer's conversation: names and results are slots shared by question, call, result, answer;
    a result's verdict is copied even when it is also a word; decoding gives the text back."""
    from tasks.text import chat_sft, tool_data

    convs = tool_data.training_conversations(400, seed=0)
    t = chat_sft.word_tokenizer(convs, 3, 16)
    msgs = [{"role": "system", "content": tool_data.SYSTEM_FULL}, {"role": "user", "content": "Is ^KS11 stationary?"},
            {"role": "assistant", "content": '{"tool":"stationarity","series":"^KS11"}'},
            {"role": "tool", "content": '{"verdict":"stationary","d":0}'},
            {"role": "assistant", "content": "The verdict for ^KS11 is stationary."}]
    slots: list[str] = []
    ids, mask = chatml.encode_chat(msgs, t, slots)
    assert slots == ["^KS11", "stationary", "0"]  # the question's "stationary" is a word, the result's a copy
    assert t.decode(ids, slots=slots).lower() == chatml.render(msgs).lower()  # a known word may change its case
    answer = [i for i, m in zip(ids, mask) if m][-9:]
    assert t.decode(answer, skip_special=True, slots=slots) == "The verdict for ^KS11 is stationary."
    assert sum(t.is_slot(i) for i in answer) == 2  # the name and the verdict are written as copies


def test_trimmed_batches_give_the_same_loss():
    """Cutting a batch to its longest conversation changes nothing the loss sees (padding is after, causal, unscored)."""
    from models.text.gpt import GPT, GPTConfig
    from tasks.text.chatml import to_example, trim_padding

    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=40, vocab_size=12, n_layer=1, n_head=2, n_embd=16, rope=True, copy_ngram=2)).eval()
    ex = [to_example([i % 11 + 1 for i in range(1, n)], [i % 2 for i in range(1, n)], 40) for n in (9, 21, 14)]
    batch = tuple(torch.stack(t) for t in zip(*ex))
    cut = trim_padding(batch)
    assert cut[0].shape == (3, 19)
    with torch.no_grad():
        assert torch.allclose(m(batch[0], batch[1], loss_mask=batch[2])[1], m(cut[0], cut[1], loss_mask=cut[2])[1])


def test_answer_forgets_whole_earlier_exchanges_never_the_current_one(monkeypatch):
    """Past the context the oldest exchange goes (question, call, result, answer together); the current question
    and its tool result stay in view even when little room is left."""
    seen = {}

    class Model:
        config = type("C", (), {"block_size": 70})()

        def generate(self, idx, room, *a, **k):
            seen["ids"], seen["room"] = idx[0].tolist(), room
            return idx

    t = tok()
    exchange = [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "{x}"},
                {"role": "tool", "content": "{y}"}, {"role": "assistant", "content": "Romeo."}]
    msgs = [{"role": "system", "content": "Be."}] + exchange + exchange[:3]
    chatml.answer(Model(), t, msgs, max_new_tokens=30)
    text = t.decode(seen["ids"])
    assert text.startswith("<|im_start|>system\nBe.") and "Romeo." not in text  # the first exchange is gone
    assert text.endswith("<|im_start|>tool\n{y}<|im_end|>\n<|im_start|>assistant\n")  # the current one is whole
    assert seen["room"] == min(30, 70 - len(seen["ids"]))
