"""CNN-LSTM for PM2.5, after Qin et al. (2019), IEEE Access 7, "A Novel Combined Prediction
Scheme Based on CNN and LSTM for Urban PM2.5 Concentration".

A 1-d convolution slides over time across the multivariate window (PM2.5 and the weather
columns known at the origin) and extracts local features; an LSTM reads the feature
sequence; a dense layer maps its last state to the horizon.

``cnn_lstm_nb`` is the paper's own set-up: the convolution also reads the neighbouring
stations (the harness's ``nb:<station>`` columns, values up to the origin only), so it
can learn how pollution moves between sites. ``cnn_lstm`` is the one-station version.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models import target_transform
from models.neural.base import NeuralForecaster
from models.registry import register
from seqcast.model_config import CNNLSTMNeighboursParams, CNNLSTMParams


class CNNLSTMNet(nn.Module):
    def __init__(self, n_features: int, channels: int, kernel: int, hidden: int, horizon: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(  # causal padding: output t reads inputs <= t
            nn.ConstantPad1d((kernel - 1, 0), 0.0), nn.Conv1d(n_features, channels, kernel), nn.ReLU(),
            nn.ConstantPad1d((kernel - 1, 0), 0.0), nn.Conv1d(channels, channels, kernel), nn.ReLU(),
        )
        self.lstm = nn.LSTM(channels + 1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, F) -> (B, H)
        feats = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, L, C)
        out, _ = self.lstm(torch.cat([feats, x[..., :1]], dim=-1))  # keep the raw target beside the features
        return self.head(out[:, -1])


@register
class CNNLSTMForecaster(NeuralForecaster):
    name = "cnn_lstm"
    Params = CNNLSTMParams
    tiny_config = {**NeuralForecaster.tiny_config, "hidden": 8, "channels": 4}

    def build_network(self, n_features: int) -> nn.Module:
        c = self.config
        return CNNLSTMNet(n_features, int(c.channels), int(c.kernel), int(c.hidden), self.horizon)


@register
class CNNLSTMNeighboursForecaster(CNNLSTMForecaster):
    """The convolution reads the target, the weather and the neighbouring stations."""

    name = "cnn_lstm_nb"
    Params = CNNLSTMNeighboursParams
    uses_neighbours = True

    def _with_log_neighbours(self, X: np.ndarray | None) -> np.ndarray | None:
        """Neighbour columns on log1p, like the target (heavy-tailed concentrations)."""
        if X is None or not self.config.neighbour_log1p:
            return X
        cols = [i for i, n in enumerate(self.exog_names_) if n.startswith("nb:")]
        if not cols:
            return X
        X = np.array(X, dtype=float)
        X[:, cols] = target_transform.apply(X[:, cols], "log1p")
        return X

    def _fit(self, y, X):
        super()._fit(y, self._with_log_neighbours(X))

    def forecast_origins(self, y, origins, h, levels=(80, 95), X=None):
        return super().forecast_origins(y, origins, h, levels, self._with_log_neighbours(X))
