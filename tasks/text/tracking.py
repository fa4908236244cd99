"""What the text stages log to MLflow besides metrics: their experiment's names and the text model as a pyfunc."""

from __future__ import annotations

from pathlib import Path

DATASET, FAMILY = "text", "gpt"  # MLflow experiment seqcast-text; tag family=gpt


def log_pyfunc(ckpt_dir: Path, registered_name: str, alias: str, register: bool, params: dict | None = None) -> str:
    """Log the slim checkpoint + tokenizer as a models-from-code pyfunc; register it and set the alias.

    ``params``: sampling defaults (keys of ``gpt.sample.serve``); the rest come from that schema.
    """
    import mlflow
    from mlflow.models import infer_signature

    import models.text
    from models.text.pyfunc import PIP_REQUIREMENTS, predict_params

    text = Path(models.text.__file__).parent  # the code this process runs, wherever the project's data live
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(text / "pyfunc_entry.py"),
        artifacts={"checkpoint": str(ckpt_dir / "model.pt"), "tokenizer": str(ckpt_dir / "tokenizer.json")},
        code_paths=[str(text.parent)],  # the models package: models/text/ imports nothing of tasks/ or flows/
        pip_requirements=PIP_REQUIREMENTS,
        signature=infer_signature(["ROMEO:"], ["text"], params=predict_params(params)),  # sampling settings per call
        registered_model_name=registered_name if register else None,
    )
    if register:
        mv = info.registered_model_version
        mlflow.MlflowClient().set_registered_model_alias(registered_name, alias, mv)
        print(f"registered {registered_name} v{mv} @{alias}")
    return info.model_uri
