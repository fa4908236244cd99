"""Forecasters (one interface, :mod:`models.base`) and the GPT text model."""
