"""The benchmarks of ``seqcast bench`` (one module each) and what several of them share."""

from __future__ import annotations


def set_values(ap, items: list[str]) -> dict:
    """``--set KEY=VALUE ...`` as a dict, each value read as YAML (the caller checks them through its schema)."""
    import yaml

    out = {}
    for kv in items:
        key, sep, val = kv.partition("=")
        if not sep:
            ap.error(f"--set wants KEY=VALUE, not {kv!r}")
        out[key] = yaml.safe_load(val)
    return out
