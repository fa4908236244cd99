"""LSTM forecaster, plus the LSTM cell written from the lecture's gate equations.

    f_t = sigma(W_f x_t + U_f h_{t-1} + b_f)        forget gate
    i_t = sigma(W_i x_t + U_i h_{t-1} + b_i)        input gate
    g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)         candidate cell state
    c_t = f_t * c_{t-1} + i_t * g_t                 cell state
    o_t = sigma(W_o x_t + U_o h_{t-1} + b_o)        output gate
    h_t = o_t * tanh(c_t)                           hidden state

``LectureLSTM`` stores its weights in ``torch.nn.LSTM``'s layout (gate order i, f, g, o;
two biases), so a test can copy weights across and compare outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from models.neural.base import NeuralForecaster
from models.registry import register
from seqcast.model_config import LSTMParams


class LectureLSTMCell(nn.Module):
    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden, n_in))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden, hidden))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden))
        bound = hidden**-0.5
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        h, c = state
        W_i, W_f, W_g, W_o = self.weight_ih.chunk(4)
        U_i, U_f, U_g, U_o = self.weight_hh.chunk(4)
        b = self.bias_ih + self.bias_hh
        b_i, b_f, b_g, b_o = b.chunk(4)
        f = torch.sigmoid(x @ W_f.T + h @ U_f.T + b_f)
        i = torch.sigmoid(x @ W_i.T + h @ U_i.T + b_i)
        g = torch.tanh(x @ W_g.T + h @ U_g.T + b_g)
        c = f * c + i * g
        o = torch.sigmoid(x @ W_o.T + h @ U_o.T + b_o)
        h = o * torch.tanh(c)
        return h, c


class LectureLSTM(nn.Module):
    """A one-layer batch-first LSTM over :class:`LectureLSTMCell`; returns (outputs, (h, c))."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.cell = LectureLSTMCell(n_in, hidden)

    def forward(self, x: torch.Tensor, state=None):
        B = x.shape[0]
        h, c = state if state is not None else (x.new_zeros(B, self.cell.hidden), x.new_zeros(B, self.cell.hidden))
        outs = []
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
            outs.append(h)
        return torch.stack(outs, dim=1), (h, c)


class LSTMNet(nn.Module):
    def __init__(self, n_features: int, hidden: int, layers: int, horizon: int, dropout: float,
                 cell: str = "torch") -> None:
        super().__init__()
        if cell == "lecture":
            self.lstm = LectureLSTM(n_features, hidden)
        else:
            self.lstm = nn.LSTM(n_features, hidden, num_layers=layers, batch_first=True,
                                dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, F) -> (B, H)
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


@register
class LSTMForecaster(NeuralForecaster):
    """LSTM over the window (target + causal weather), a dense head for all horizon steps."""

    name = "lstm"
    Params = LSTMParams
    tiny_config = {**NeuralForecaster.tiny_config, "hidden": 8}

    def build_network(self, n_features: int) -> nn.Module:
        c = self.config
        return LSTMNet(n_features, int(c.hidden), int(c.layers), self.horizon, float(c.dropout),
                       str(c.cell))
