"""The GPT and its tokenizer as an MLflow pyfunc that generates text.

Logged "from code" (``models/text/pyfunc_entry.py``): nothing is pickled; the
artifacts are the slim checkpoint (``torch.save`` of state dict + model_args) and
the tokenizer JSON. ``predict`` takes prompts and returns the continuations.
Chat models (tokenizer with ChatML tokens) get prompts rendered as a chat turn and
return the model's next assistant message. That message may be a tool call (a JSON
object, ``tasks/text/tools.py``): the pyfunc does not run tools — they read the pipeline's
reports on the machine that ran ``dvc repro``; ``seqcast chat`` runs the tool loop.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import torch

from seqcast.gpt_config import ServeParams

PIP_REQUIREMENTS = ["torch==2.13.0", "tokenizers>=0.20", "mlflow>=3.17,<3.18", "pydantic>=2.9"]


def predict_params(sampling: ServeParams | dict | None = None) -> dict:
    """The ``predict(params=...)`` defaults from ``gpt.sample.serve`` (a dict: some of its keys).

    A params schema cannot hold None: 0 stands for no top-k cut, 1.0 for no nucleus cut.
    """
    if not isinstance(sampling, ServeParams):
        sampling = ServeParams(**(sampling or {}))
    d = sampling.model_dump()
    return {**d, "top_k": d["top_k"] or 0, "top_p": d["top_p"] or 1.0}


def save_slim(model, path: str | Path, extra: dict | None = None) -> Path:
    """Weights + model_args (+ e.g. sampling defaults): all that generation needs."""
    path = Path(path)
    torch.save({"model": model.state_dict(), "model_args": model.config.to_dict(), **(extra or {})}, path)
    return path


class GPTTextModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from models.text.gpt import model_from_checkpoint
        from models.text.tokenizers import IM_END, load_tokenizer

        ckpt = torch.load(context.artifacts["checkpoint"], map_location="cpu", weights_only=True)
        self.model = model_from_checkpoint(ckpt).eval()
        self.tok = load_tokenizer(context.artifacts["tokenizer"])
        self.defaults = predict_params(ckpt.get("sampling"))  # what params.yaml gave when it was saved
        self.chat = IM_END in self.tok.specials
        self.stop = self.tok.token_id(IM_END) if self.chat else None

    # No type hints on purpose: the explicit signature (with its params schema) is logged instead, since
    # MLflow prefers a type-hint signature, which has no params (temperature, top_k, ... per call).
    def predict(self, context, model_input, params=None):
        """Prompts (list of str, a str, or a one-column DataFrame) -> list of generated continuations."""
        from models.text.chat_template import DEFAULT_SYSTEM, render

        p = {**self.defaults, **(params or {})}
        if isinstance(model_input, str):
            model_input = [model_input]
        elif hasattr(model_input, "iloc"):  # pandas DataFrame / Series
            model_input = list(model_input.iloc[:, 0] if model_input.ndim == 2 else model_input)
        out = []
        for prompt in model_input:
            if self.chat:
                prompt = render([{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": prompt}],
                                add_generation_prompt=True)
            copies = {"slots": []} if getattr(self.tok, "copies_words", False) else {}  # the prompt's copied words
            ids = self.tok.encode(prompt, **copies)[-self.model.config.block_size :] or [0]
            idx = torch.tensor([ids])  # (1, T)
            y = self.model.generate(
                idx, int(p["max_new_tokens"]), float(p["temperature"]), int(p["top_k"]), float(p["top_p"]),
                seed=int(p["seed"]), stop_token=self.stop,
            )
            out.append(self.tok.decode(y[0, len(ids) :].tolist(), skip_special=True, **copies))
        return out
