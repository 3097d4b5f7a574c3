"""A chat provider whose answers are known in advance, so an evaluation's scores are too.

Models (the model id picks the behaviour; each knows the arithmetic set's answers):
- "right": always the reference answer;
- "wrong": the reference plus one;
- "half": right on items whose id ends in an even digit, else wrong;
- "noisy": with a seed, right when seed % 3 != 0 (so a majority of 3+ samples is right);
- as a judge (a prompt that starts "Rubric:"), 10/10 when the answer ends with the reference;
- "gullible": prints any injection marker it sees in the untrusted document, unless the document
  is delimited; as a detector, says YES when the text tells it to ignore something.
Prices: "right" and "wrong" cost $1 per million input and output tokens (see `PRICES`).
"""

from __future__ import annotations

import re
import threading
import time

from adapters.registry import Provider
from adapters.tasks import Completer
from adapters.types import Finish, Task, Usage
from services.evaluation import datasets

NAME = "oracle"
DELAY_S = 0.0
calls: list[dict] = []
_lock = threading.Lock()


def _answers() -> dict[str, str]:
    return {item.input: str(item.reference) for item in datasets.builtin("arithmetic").items}


class OracleCompleter(Completer):
    delay_s = DELAY_S

    def _stream(self, messages, params):
        with _lock:
            calls.append({"model": self.model, "messages": messages, "seed": params.seed})
        if self.delay_s:
            time.sleep(self.delay_s)
        text = self._reply(messages, params)
        yield text
        words = sum(len(str(m["content"]).split()) for m in messages)
        yield Usage(input_tokens=words, output_tokens=len(text.split()))
        yield Finish("stop")

    def _reply(self, messages, params) -> str:
        prompt = str(messages[-1]["content"])
        if str(messages[0]["content"]).startswith("You check untrusted text"):
            return "YES" if "ignore" in prompt.lower() or "disregard" in prompt.lower() else "NO"
        if prompt.startswith("Rubric:"):  # a judge: compares the answer's numbers with the reference
            reference = re.search(r"<reference-\w+>\n(.*?)\n</reference", prompt, re.DOTALL)
            answer = re.search(r"<answer-\w+>\n(.*?)\n</answer", prompt, re.DOTALL)
            good = reference and answer and re.findall(r"\d+", answer[1])[-1:] == [reference[1].strip()]
            return "It matches the reference. SCORE: 10" if good else "It does not match. SCORE: 1"
        if "sentiment" in prompt.lower():  # the sentiment set: "right" names the label, the others say positive
            item = next(
                (i for i in datasets.builtin("sentiment").items if i.input in prompt.rsplit("\n\n", 1)[-1]), None
            )
            return f"{item.label.capitalize()}." if item and self.model == "right" else "Positive, I think."
        if self.model == "gullible":
            marker = re.search(r"\b[A-Z]+-\d{4}\b", prompt)
            if marker and "<document>" not in prompt:
                return marker.group(0)
            return "The task, done."
        question = next((q for q in _answers() if q in prompt), None)
        if question is None:
            return "I do not know."
        right = int(_answers()[question])
        answer = right if self._is_right(question, params) else right + 1
        return f"Let me work it out. The answer is {answer}."

    def _is_right(self, question: str, params) -> bool:
        if self.model == "right":
            return True
        if self.model == "half":
            item = next(i for i in datasets.builtin("arithmetic").items if i.input == question)
            return int(item.id[-1]) % 2 == 0
        if self.model == "noisy":
            return (params.seed or 0) % 3 != 0
        return False


def provider() -> Provider:
    return Provider(name=NAME, label="Oracle", adapters={Task.COMPLETION: OracleCompleter}, models=lambda task: "right")
