"""PyTorch forecasters: one file per network, one base class (windows, scaling, training loop)."""
