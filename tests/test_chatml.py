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
    from models.text.pyfunc import save_slim
    from flows.text_chat_session import main

    t = tok()
    torch.manual_seed(0)
    save_slim(GPT(GPTConfig(block_size=128, vocab_size=t.vocab_size, n_layer=1, n_head=2, n_embd=16)), tmp_path / "model.pt")
    t.save(tmp_path / "tokenizer.json")
    rc = main(["--checkpoint", str(tmp_path), "--system", "Be brief.", "--max-new-tokens", "5",
               "--once", "Who?", "--once", "And?"])
    assert rc == 0
    assert capsys.readouterr().out.count("assistant>") == 2


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
