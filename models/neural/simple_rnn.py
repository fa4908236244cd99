"""The lecture's SimpleRNN and a sized-up RNN.

Lecture (Keras): ``BatchNormalization -> SimpleRNN(1, activation="relu") -> Dense(1)`` on a
window of 12 values: 9 parameters, 7 trainable (BatchNorm gamma/beta trainable, moving
mean/variance not; SimpleRNN W, U, b; Dense w, b). PyTorch's ``nn.RNN`` carries two
biases, so the lecture's cell is written out: ``h_t = relu(W x_t + U h_{t-1} + b)``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.neural.base import NeuralForecaster
from models.registry import register
from seqcast.model_config import RNNParams, SimpleRNNParams


class KerasSimpleRNN(nn.Module):
    """One-bias Elman RNN layer (Keras semantics); returns the last hidden state (B, units)."""

    def __init__(self, n_in: int, units: int, activation=torch.relu) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(n_in, units))
        self.U = nn.Parameter(torch.empty(units, units))
        self.b = nn.Parameter(torch.zeros(units))
        nn.init.xavier_uniform_(self.W)
        nn.init.orthogonal_(self.U)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, L, n_in)
        h = x.new_zeros(x.shape[0], self.U.shape[0])
        xw = x @ self.W  # (B, L, units)
        for t in range(x.shape[1]):
            h = self.activation(xw[:, t] + h @ self.U + self.b)
        return h


class LectureRNN(nn.Module):
    """BatchNorm -> SimpleRNN(1, relu) -> Dense(horizon)."""

    def __init__(self, n_features: int = 1, units: int = 1, horizon: int = 1) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n_features)
        self.rnn = KerasSimpleRNN(n_features, units)
        self.head = nn.Linear(units, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, F) -> (B, H)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.head(self.rnn(x))


@register
class SimpleRNNForecaster(NeuralForecaster):
    """The lecture's 9-parameter network: univariate, window 12, one step, recursive beyond."""

    name = "simple_rnn"
    Params = SimpleRNNParams  # window 12, one unit, one step
    supports_exog = False

    def build_network(self, n_features: int) -> nn.Module:
        return LectureRNN(n_features, int(self.config.units), self.horizon)


class StackedRNN(nn.Module):
    def __init__(self, n_features: int, hidden: int, layers: int, horizon: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.RNN(n_features, hidden, num_layers=layers, batch_first=True, nonlinearity="tanh",
                          dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, L, hidden)
        return self.head(out[:, -1])


@register
class RNNForecaster(NeuralForecaster):
    """Sized-up Elman RNN (tanh), multi-output head over the horizon, exogenous inputs."""

    name = "rnn"
    Params = RNNParams
    tiny_config = {**NeuralForecaster.tiny_config, "hidden": 8}

    def build_network(self, n_features: int) -> nn.Module:
        c = self.config
        return StackedRNN(n_features, int(c.hidden), int(c.layers), self.horizon, float(c.dropout))
