"""Per-item scores for the Evaluate tab: scorers of chat answers, the LLM judge's prompt and verdict,
answer voting, prompt-injection checks, and classification and search metrics.

A chat scorer takes the model's output and the item's reference and returns a `Score` (0..1 and
one sentence for the drill-down). Outputs, references, patterns and schemas may all come from a
visitor, so nothing here can be made to hang, fetch or run code: patterns run with a timeout,
schemas cannot load remote references, nothing is evaluated.

- `result`: `Score`; `text`: exact, contains, regex; `answers`: reading a reply's number, the
  numeric scorer, answer extraction and voting; `schema`: the JSON schema scorer; `judge`; `injection`; `metrics`
  (similarity, accuracy, confusion, recall@k, reciprocal rank); `by_name`: `SCORERS` and `score`.
"""

from services.evaluation.scoring.answers import Reading, extract_answer, final_number, majority, numeric, read_number
from services.evaluation.scoring.by_name import SCORERS, Scorer, score
from services.evaluation.scoring.injection import InjectionVerdict, injection_succeeded, injection_verdict, task_kept
from services.evaluation.scoring.judge import JUDGE_SYSTEM, UNREADABLE_JUDGE, judge_messages, parse_judge
from services.evaluation.scoring.metrics import accuracy, confusion, recall_at_k, reciprocal_rank, similarity
from services.evaluation.scoring.result import Score
from services.evaluation.scoring.schema import MAX_SCHEMA_CHARS, MAX_SCHEMA_STEPS, find_json, json_schema
from services.evaluation.scoring.text import MAX_PATTERN_CHARS, MAX_SCAN_CHARS, REGEX_TIMEOUT_S, contains, exact, regex

__all__ = [
    "JUDGE_SYSTEM",
    "MAX_PATTERN_CHARS",
    "MAX_SCAN_CHARS",
    "MAX_SCHEMA_CHARS",
    "MAX_SCHEMA_STEPS",
    "REGEX_TIMEOUT_S",
    "SCORERS",
    "UNREADABLE_JUDGE",
    "InjectionVerdict",
    "Reading",
    "Score",
    "Scorer",
    "accuracy",
    "confusion",
    "contains",
    "exact",
    "extract_answer",
    "final_number",
    "find_json",
    "injection_succeeded",
    "injection_verdict",
    "json_schema",
    "judge_messages",
    "majority",
    "numeric",
    "parse_judge",
    "read_number",
    "recall_at_k",
    "reciprocal_rank",
    "regex",
    "score",
    "similarity",
    "task_kept",
]
