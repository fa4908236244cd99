"""The question grammar of the chat: many phrasings per intent, some held out of training.

Each question kind has *core* forms (a sentence with the slots it needs: ``{series}``,
``{model}``, ``{metric}``, ``{dataset}``, ``{date}``, ``{expression}``) in two families:
``train`` forms, which the fine-tuning data are drawn from, and ``heldout`` forms, which
no training conversation ever uses — the evaluation's "unseen phrasings" (other words,
other orders). A question is an *opener* of the same family ("Tell me", "Quick
question:") + a core form, with random end punctuation and first-letter case.

A recipe is chosen on the training forms alone: ``dev`` is every :data:`DEV_EVERY`-th
training form of each kind and ``fit`` the others (:func:`forms`; ``seqcast bench
gpt_chat`` fine-tunes on ``fit`` and scores ``dev``), so the held-out forms judge a
recipe that never saw them, not one tuned on them.

Questions no tool answers (``out_of_scope``) have their own two families: the
fine-tune learns to say :data:`CANT_ANSWER` for the training ones and is judged on the
held-out ones (and must write no number of its own there).

Training questions are varied further (:func:`question` with ``noise=True``, never the
evaluation's): a *lexicon* swaps the words that carry an intent for their synonyms
(``lowest`` -> ``smallest``, ``least``, ``minimum``...; ``forecast`` -> ``prediction``...),
and *filler* words no vocabulary holds (made-up letters) open a question or stand
between its words. A word the tokenizer does not know is a copy slot, like a name
(:mod:`models.text.word_tokenizer`), so without fillers every unknown word of a new
phrasing ("Excuse me, ...") was taken for the series; with them the model learns
that a slot is a name by where it stands, not because it is unknown.
"""

from __future__ import annotations

import random
import re
import string

CANT_ANSWER = "I can't answer that from the pipeline's reports."
GREETINGS = ("Hello", "Hi", "Who are you?", "Thanks", "Good morning", "Hi there", "Thank you", "Hey")
GREETING_ANSWER = "Hello! Ask me about the pipeline's results."

CORES: dict[str, dict[str, tuple[str, ...]]] = {
    "metric": {
        "train": (
            "What is the {metric} of {model} on {series}?",
            "What's the {metric} of {model} on {series}?",
            "What {metric} does {model} have on {series}?",
            "What {metric} did {model} get on {series}?",
            "What {metric} did {model} reach on {series}?",
            "{metric} of {model} on {series}?",
            "Give me the {metric} of {model} for {series}.",
            "How much is the {metric} of {model} on {series}?",
            "What is {model}'s {metric} on {series}?",
            "For {series}, what is the {metric} of {model}?",
            "On {series}, what is the {metric} of {model}?",
            "What was the {metric} for {model} on {series}?",
            "Show the {metric} of {model} on {series}.",
            "What is the {metric} score of the {model} model on {series}?",
            "How did {model} do on {series} in terms of {metric}?",
            "Report the {metric} that {model} got on {series}.",
            "What {metric} does the model {model} achieve on the series {series}?",
            "In the backtest of {series}, what {metric} did {model} score?",
            "Look up {metric} for {model} on {series}.",
            "{series}: what is the {metric} of {model}?",
            "What value of {metric} did {model} obtain for {series}?",
            "I want the {metric} of {model} on {series}.",
        ),
        "heldout": (
            "Tell me the {metric} that {model} reached on {series}.",
            "On {series}, what {metric} did {model} get?",
            "I need {model}'s {metric} for {series}.",
            "How well did {model} score on {series} by {metric}?",
            "Could you look up the {metric} of {model} for {series}?",
            "What did {model} get for {metric} on {series}?",
            "Find the {metric} for model {model} on series {series}.",
            "Using {model} on {series}, what was the {metric}?",
            "What {metric} was recorded for {model} on {series}?",
            "For the series {series}, how much {metric} does {model} have?",
        ),
    },
    "best": {
        "train": (
            "Which model is best by {metric} on {series}?",
            "What is the best model for {metric} on {series}?",
            "Which model has the best {metric} on {series}?",
            "Best model on {series} by {metric}?",
            "On {series}, which model is best in {metric}?",
            "Which model wins on {series} by {metric}?",
            "For {series}, what model has the best {metric}?",
            "Which is the top model for {metric} on {series}?",
            "What model ranks first by {metric} on {series}?",
            "Tell me the best {metric} model on {series}.",
        ),
        "heldout": (
            "Who is the best on {series} judged by {metric}?",
            "Which model should I pick for {series} if I care about {metric}?",
            "On {series}, what's the strongest model by {metric}?",
            "Name the model with the best {metric} for {series}.",
            "Which model comes out on top in {metric} for {series}?",
        ),
    },
    "lowest": {
        "train": (
            "Which model has the lowest {metric} on {series}?",
            "What model has the smallest {metric} on {series}?",
            "Lowest {metric} on {series}: which model?",
            "On {series}, which model has the lowest {metric}?",
            "Which model got the lowest {metric} for {series}?",
        ),
        "heldout": (
            "Which model reaches the minimum {metric} on {series}?",
            "For {series}, who has the least {metric}?",
            "Name the model with the lowest {metric} on {series}.",
        ),
    },
    "highest": {
        "train": (
            "Which model has the highest {metric} on {series}?",
            "What model has the largest {metric} on {series}?",
            "Highest {metric} on {series}: which model?",
            "On {series}, which model has the highest {metric}?",
            "Which model got the highest {metric} for {series}?",
        ),
        "heldout": (
            "Which model reaches the maximum {metric} on {series}?",
            "For {series}, who has the most {metric}?",
            "Name the model with the highest {metric} on {series}.",
        ),
    },
    "stationary": {
        "train": (
            "Is {series} stationary?",
            "Is the series {series} stationary?",
            "What is the stationarity verdict for {series}?",
            "Is {series} stationary or not?",
            "What did the stationarity tests say about {series}?",
            "Stationarity of {series}?",
            "Does {series} pass the stationarity tests?",
            "What is the verdict of the stationarity tests on {series}?",
            "Check whether {series} is stationary.",
            "How stationary is {series}?",
        ),
        "heldout": (
            "Would you call {series} a stationary series?",
            "What do the unit root tests conclude for {series}?",
            "Tell me if {series} is stationary.",
            "Is the {series} series stationary according to the tests?",
            "What stationarity result did {series} get?",
        ),
    },
    "differences": {
        "train": (
            "How many differences does {series} need?",
            "What is the order of differencing of {series}?",
            "How many times must {series} be differenced?",
            "What d does {series} need?",
            "What is d for {series}?",
            "How many differences for {series}?",
            "Which order of differencing makes {series} stationary?",
            "How often should I difference {series}?",
        ),
        "heldout": (
            "What integration order does {series} have?",
            "To make {series} stationary, how many differences are needed?",
            "Tell me the d of {series}.",
            "How many rounds of differencing does {series} require?",
        ),
    },
    "forecast": {
        "train": (
            "What is the forecast for {series} on {date}?",
            "What is the forecast of {series} at {date}?",
            "What does the champion forecast for {series} on {date}?",
            "Forecast of {series} for {date}?",
            "What value is forecast for {series} on {date}?",
            "What will {series} be on {date} according to the forecast?",
            "On {date}, what is the forecast for {series}?",
            "Give me the forecast of {series} for {date}.",
            "How much is {series} forecast to be at {date}?",
            "What is the predicted value of {series} on {date}?",
        ),
        "heldout": (
            "What number does the forecast give {series} for {date}?",
            "Tell me the forecast at {date} for {series}.",
            "For {date}, what is {series} expected to be?",
            "What is {series} predicted at on {date}?",
            "Which value does the pipeline forecast on {date} for {series}?",
        ),
    },
    "next_forecast": {
        "train": (
            "What is the latest forecast for {series}?",
            "What is the next forecast of {series}?",
            "What does the forecast say for {series}?",
            "Give me the latest forecast for {series}.",
            "What is the first forecast step of {series}?",
        ),
        "heldout": (
            "What comes next for {series} according to the forecast?",
            "Tell me the upcoming forecast of {series}.",
        ),
    },
    "champion": {
        "train": (
            "What is the champion of {dataset}?",
            "Which model is the champion of {dataset}?",
            "Which model was promoted for {dataset}?",
            "Who is the champion on {dataset}?",
            "What model won the promotion of {dataset}?",
            "Which champion does {dataset} have?",
            "What is the promoted model of the {dataset} dataset?",
            "Champion of {dataset}?",
            "Which model serves the {dataset} dataset?",
        ),
        "heldout": (
            "Tell me which model is champion for {dataset}.",
            "What model did the pipeline promote on {dataset}?",
            "In the {dataset} dataset, which model is the champion?",
            "Who won on the {dataset} dataset?",
        ),
    },
    "calculator": {
        "train": (
            "What is {expression}?",
            "Compute {expression}.",
            "Calculate {expression}.",
            "How much is {expression}?",
            "What does {expression} equal?",
            "Work out {expression}.",
        ),
        "heldout": (
            "Can you do {expression} for me?",
            "What do you get from {expression}?",
            "Evaluate {expression}, please.",
        ),
    },
}

FAMILIES = ("train", "heldout", "fit", "dev")
DEV_EVERY = 4  # every 4th training form of a kind is the development family

OPENERS = {
    "train": ("", "", "", "", "Please tell me: ", "Tell me, ", "Can you tell me: ", "I'd like to know: ",
              "Quick question: ", "Hey, ", "Please, ", "Do you know: "),
    "heldout": ("", "", "", "Excuse me, ", "Hi, ", "One more thing: ", "Could you say: "),
}

OUT_OF_SCOPE = {
    "train": (
        "What will the weather be tomorrow?", "Who won the football match yesterday?", "What is the capital of {dataset}?",
        "How do I cook rice?", "What is the price of bitcoin today?", "Tell me a joke.", "What is the meaning of life?",
        "Translate hello into another language.", "Who is the president?", "How tall is the highest mountain?",
        "What is the GDP of the biggest economy?", "Which stock will go up next week?", "Why did {model} fail on {series}?",
        "When was {series} first traded?", "Who wrote the {model} model?", "What will {series} be next year?",
        "Should I buy {series} now?", "How many stations does {dataset} have?", "What time is it?",
        "Write a poem about {series}.", "What is the best programming language?", "How far is the moon?",
        "Who invented the {model} model?", "What is the interest rate today?", "Where is {series}?",
        "How old is {model}?", "What is the population of {series}?", "Can you predict the lottery numbers?",
        "What is the air quality today?", "What did the markets do in 1929?",
        "How much money will I make with {model}?", "Which country has the most people?",
        "What is your favourite colour?", "Explain quantum physics.", "How do I fix my car?",
        "What is the {metric} of {model} on {series} next year?", "Who will win the election?",
    ),
    "heldout": (
        "How many people live in Tokyo?", "What's the exchange rate of the won against the dollar?",
        "Which company should I invest in tomorrow?", "What was the temperature in Beijing on 2015-01-01?",
        "How old is the universe?", "Who painted the Mona Lisa?", "What is the boiling point of water in Kelvin?",
        "Which team will win the next World Cup?", "What will the unemployment rate be next year?",
        "How many goals did Son Heung-min score last season?", "What is the speed of light?",
        "Recommend a good restaurant in Seoul.", "What year did the Korean War end?",
        "Will it rain in Busan tomorrow?", "What is the tallest building in the world?",
        "How much did Samsung earn in 2018?", "What is the square root of a banana?",
        "Who is the CEO of the pipeline?", "How many days until Christmas?", "What does the fox say?",
        "What will the KOSPI close at in 2030?", "What is the population of Mars?",
    ),
}


# Synonyms of the words that carry an intent (training forms only; each occurrence swapped with
# probability LEXICON_SHARE). Keys are matched as whole words, in the case written.
LEXICON: dict[str, tuple[str, ...]] = {
    "best": ("top", "strongest", "leading", "finest", "best-performing"),
    "wins": ("leads", "comes first", "is ahead", "does best"),
    "lowest": ("smallest", "least", "minimum", "minimal", "lowest"),
    "smallest": ("lowest", "least", "minimum", "tiniest"),
    "highest": ("largest", "greatest", "maximum", "biggest", "most"),
    "largest": ("highest", "greatest", "maximum", "biggest"),
    "forecast": ("prediction", "projection", "forecast"),
    "predicted": ("forecast", "projected", "expected"),
    "latest": ("next", "upcoming", "newest", "coming", "nearest"),
    "next": ("latest", "upcoming", "coming", "following"),
    "stationarity tests": ("unit root tests", "ADF and KPSS tests", "tests"),
    "order of differencing": ("differencing order", "order of integration", "integration order", "number of differences"),
    "champion": ("winner", "chosen model", "selected model", "promoted model"),
    "promoted": ("chosen", "selected", "picked", "crowned"),
    "get": ("reach", "obtain", "score", "achieve", "record"),
    "reach": ("get", "obtain", "score", "achieve"),
    "score": ("get", "obtain", "reach", "record"),
    "Give me": ("Show me", "Find", "Tell me", "Look up", "Name"),
    "Show": ("Give", "Report", "Find", "List"),
    "Report": ("Show", "Give", "Tell me", "State"),
    "Look up": ("Find", "Fetch", "Check", "Get"),
    "Tell me": ("Give me", "Show me", "Say", "Let me know"),
    "Calculate": ("Compute", "Evaluate", "Work out", "Solve", "Figure out"),
    "Compute": ("Calculate", "Evaluate", "Work out", "Do"),
    "What is": ("What's", "What is", "Whats"),
}
LEXICON_SHARE = 0.5
FILLER_OPENER_SHARE, FILLER_INSIDE_SHARE = 0.25, 0.2
_LEXICON_RE = re.compile(r"\b(" + "|".join(re.escape(k) for k in sorted(LEXICON, key=len, reverse=True)) + r")\b")


def filler_word(rng: random.Random) -> str:
    """A word no vocabulary holds (made-up letters, lower-case or capitalised): a copy slot that is no name."""
    w = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))
    return w.capitalize() if rng.random() < 0.4 else w


def swap_synonyms(form: str, rng: random.Random) -> str:
    """``form`` with some of its intent words replaced by synonyms of :data:`LEXICON`."""
    return _LEXICON_RE.sub(lambda m: rng.choice(LEXICON[m.group(1)]) if rng.random() < LEXICON_SHARE else m.group(1),
                           form)


def add_fillers(form: str, rng: random.Random) -> str:
    """``form`` with made-up words: an opener of 1-3 of them, and/or one between two of its words (never beside a
    slot, so that which piece is the name stays clear)."""
    words = form.split(" ")
    if rng.random() < FILLER_INSIDE_SHARE and len(words) > 2:
        gaps = [i for i in range(1, len(words)) if "{" not in words[i - 1] and "{" not in words[i]]
        if gaps:
            words.insert(rng.choice(gaps), filler_word(rng))
    text = " ".join(words)
    if rng.random() < FILLER_OPENER_SHARE:
        opener = " ".join(filler_word(rng) for _ in range(rng.randint(1, 3)))
        opener = opener[0].upper() + opener[1:]
        first = text if text.startswith(("{", "I ")) else text[0].lower() + text[1:]
        text = opener + rng.choice([", ", ": ", " "]) + first
    return text


def forms(kind: str, family: str) -> tuple[str, ...]:
    """The core forms of ``kind`` in ``family``: ``train`` (every form trained on), ``heldout`` (never trained on),
    and the two parts of ``train`` a recipe is chosen on: ``dev`` (every DEV_EVERY-th form) and ``fit`` (the rest)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown phrasing family {family!r}; one of {', '.join(FAMILIES)}")
    if family == "heldout":
        return CORES[kind]["heldout"]
    train = CORES[kind]["train"]
    if family == "train":
        return train
    return tuple(f for i, f in enumerate(train) if (i % DEV_EVERY == DEV_EVERY - 1) == (family == "dev"))


def _outer(family: str) -> str:
    """The family of openers and out-of-scope questions: ``fit`` and ``dev`` are parts of ``train``."""
    return "heldout" if family == "heldout" else "train"


def question(kind: str, slots: dict, rng: random.Random, family: str, noise: bool = False) -> str:
    """One phrasing of ``kind`` with ``slots`` from ``family`` (:data:`FAMILIES`): opener + core form;
    ``noise`` (training only): synonyms swapped and made-up filler words added."""
    form = rng.choice(forms(kind, family))
    opener = rng.choice(OPENERS[_outer(family)])
    if noise:
        form = add_fillers(swap_synonyms(form, rng), rng)
    if opener and not form.startswith(("{", "I ")):  # "Tell me, what is ..." (a name keeps its case)
        form = form[0].lower() + form[1:]
    text = opener + form.format(**slots)
    if rng.random() < 0.15 and text[-1] in "?.":  # no end mark, or another one
        text = text[:-1] + rng.choice(["", " ?", "?!"])
    if rng.random() < 0.15 and not (opener or form).startswith("{"):
        text = text[0].lower() + text[1:]
    return text


def out_of_scope(slots: dict, rng: random.Random, family: str, noise: bool = False) -> str:
    form = rng.choice(OUT_OF_SCOPE[_outer(family)])
    return (add_fillers(form, rng) if noise else form).format(**slots)
