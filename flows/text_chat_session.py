"""``seqcast chat``: talk to the ChatML fine-tuned GPT; the conversation is kept, the system message honoured.

The model may answer with a tool call (a JSON object, ``tasks/text/tools.py``): the call is
validated and run on the pipeline's reports (``paths.reports`` of params.yaml, as the
last ``dvc repro`` left them), printed as ``tool> ...`` with its result, and the model
writes the answer from it; the answer is the last line, ``assistant> ...``. With
``gpt.sft.constrain_calls``, an argument the reports do not hold is replaced by the likeliest one
they hold before the call runs (the call line then shows what the model wrote);
``--calls-as-written`` runs the model's calls untouched.

The model comes from a local checkpoint folder (default ``checkpoints/gpt-chat``:
``model.pt`` + ``tokenizer.json``) or from the MLflow registry
(``--model-uri models:/seqcast-gpt-chat@champion``). ``--once "question"`` answers
one question and exits (scripts, tests); otherwise it reads stdin until EOF or ``/exit``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    from seqcast.config import load_params
    from seqcast.paths import project_root
    from tasks.text.chatml import DEFAULT_SYSTEM
    from tasks.text.tool_chat import chat_turn, load_chat_model
    from tasks.text.tools import Reports, Toolbox

    params = load_params()
    p = params.gpt
    ap = argparse.ArgumentParser(prog="seqcast chat", description=__doc__.split("\n")[0])
    ap.add_argument("--system", default=DEFAULT_SYSTEM, help=f"system message (default: {DEFAULT_SYSTEM!r})")
    ap.add_argument("--checkpoint", default=str(project_root() / p.paths.chat_checkpoints))
    ap.add_argument("--model-uri", default=None, help=f"e.g. models:/{p.registry.chat_model}@{p.registry.alias}")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--max-new-tokens", type=int, default=p.sft.max_new_tokens)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--once", action="append", default=None, help="a user message; repeat for several turns")
    ap.add_argument("--reports", default=str(project_root() / params.paths.reports),
                    help="the pipeline's reports the tools read (default: paths.reports)")
    ap.add_argument("--no-tools", action="store_true", help="answer every tool call with an error")
    ap.add_argument("--calls-as-written", action="store_true",
                    help="run the model's calls as it wrote them (default: gpt.sft.constrain_calls decides)")
    a = ap.parse_args(argv)
    constrain = p.sft.constrain_calls and not a.calls_as_written

    try:
        model, tok = load_chat_model(a.checkpoint, a.model_uri)
    except (FileNotFoundError, StopIteration) as e:
        print(f"no chat model ({e}); run `dvc repro gpt_chat_sft` (or `python -m flows.text_chat`) first",
              file=sys.stderr)
        return 1
    messages = [{"role": "system", "content": a.system}]
    toolbox = Toolbox(Reports.load(a.reports), enabled=not a.no_tools)

    def show(msg: dict) -> None:
        if msg["role"] == "tool":
            print(f"tool> {msg['content']}", flush=True)
        elif msg["content"].lstrip().startswith("{"):
            held = f"   (written: {msg['written']})" if msg.get("written") else ""
            print(f"call> {msg['content']}{held}", flush=True)

    def turn(user: str) -> None:
        messages.append({"role": "user", "content": user})  # the calls, results and answer are kept too
        reply = chat_turn(model, tok, messages, toolbox, a.max_new_tokens, a.temperature, a.seed, on_message=show,
                          constrain=constrain)
        print(f"assistant> {reply}", flush=True)

    if a.once:
        for u in a.once:
            turn(u)
        return 0
    print(f"system: {a.system}\n(/exit or Ctrl-D to leave, /reset to forget the conversation)")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            return 0
        if line == "/exit":
            return 0
        if line == "/reset":
            del messages[1:]
            continue
        if line:
            turn(line)
