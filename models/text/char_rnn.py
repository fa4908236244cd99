"""Recurrent character language models: the Elman RNN (1990) and the LSTM LM (Mikolov 2010; Graves 2013).

The rungs between the n-gram models and the GPT: instead of a fixed window of the
last n-1 characters, a hidden state carries (in principle) the whole history; the
LSTM's gates let it keep information over hundreds of steps where the plain tanh
RNN's gradients vanish. ``forward(idx, targets=None, state=None)`` returns
``(logits, loss, state)``: training carries ``state`` from one chunk of a stream to
the next (truncated back-propagation through time), evaluation reads a whole text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class RecurrentLMConfig:
    vocab_size: int = 65
    cell: str = "lstm"  # lstm | rnn (Elman: h_t = tanh(W x_t + U h_{t-1} + b))
    embd: int = 64
    hidden: int = 256
    layers: int = 1

    def __post_init__(self):
        assert self.cell in ("lstm", "rnn"), f"cell must be lstm or rnn, not {self.cell!r}"

    def to_dict(self) -> dict:
        return asdict(self)


class RecurrentLM(nn.Module):
    """Embedding -> RNN or LSTM -> linear read-out to the vocabulary."""

    def __init__(self, config: RecurrentLMConfig):
        super().__init__()
        self.config = config
        self.emb = nn.Embedding(config.vocab_size, config.embd)
        rnn = nn.LSTM if config.cell == "lstm" else nn.RNN
        self.rnn = rnn(config.embd, config.hidden, num_layers=config.layers, batch_first=True)
        self.head = nn.Linear(config.hidden, config.vocab_size)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, state=None
    ) -> tuple[torch.Tensor, torch.Tensor | None, object]:
        h, state = self.rnn(self.emb(idx), state)  # (B, T, H); state: h_T (and c_T for the LSTM)
        logits = self.head(h)  # (B, T, V)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.reshape(-1))
        return logits, loss, state

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def detach_state(state):
    """Cut the graph at a chunk boundary (truncated BPTT) but keep the values."""
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
