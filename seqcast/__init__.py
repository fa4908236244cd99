"""seqcast: the shared core (configuration, data contract, paths, tracking) of the pipeline.

The pipeline itself lives in the sibling packages ``flows`` (Prefect flows, one per
stage), ``tasks`` (the stage logic as pure functions with thin Prefect tasks) and
``models`` (forecasters and the GPT).
"""

__version__ = "0.1.0"
