"""The ChatML template (what a chat model reads and writes), shared by training and inference.

    <|im_start|>system\\n{...}<|im_end|>\\n<|im_start|>user\\n{...}<|im_end|>\\n<|im_start|>assistant\\n{...}<|im_end|>\\n

It lives beside the model (not in ``tasks/``) so a logged chat model renders prompts
exactly as it was fine-tuned, without the pipeline's code.
"""

from __future__ import annotations

from models.text.tokenizers import IM_END, IM_START

SYSTEM_TERSE = "Answer with the value only."
SYSTEM_FULL = "Answer in one full sentence."
DEFAULT_SYSTEM = SYSTEM_FULL


def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """Messages [{role, content}] -> ChatML text; optionally open the assistant's turn."""
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return text + (f"{IM_START}assistant\n" if add_generation_prompt else "")
