"""An evaluation spec as JSON and back: for the store (resume), the `/evaluate` API and the CLI.

JSON from a visitor is untrusted: every field is type-checked here, and targets are checked again
by `services.access` (the trust boundary) when the run builds their adapters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from adapters.errors import BadInput
from adapters.types import CompletionParams
from services.evaluation import datasets
from services.evaluation.datasets import Dataset, Item
from services.evaluation.variants import Variant

if TYPE_CHECKING:
    from services.evaluation.engine import Spec

KEYS = (
    "dataset",
    "targets",
    "variants",
    "scorer",
    "scorer_options",
    "judge",
    "embedder",
    "rubric",
    "params",
    "cost_cap_usd",
    "concurrency",
    "seed",
)
PARAM_KEYS = ("max_tokens", "temperature", "top_p", "seed")


def to_dict(spec: Spec) -> dict[str, Any]:
    return {
        "dataset": dataset_dict(spec.dataset),
        "targets": [t.name for t in spec.targets],
        "variants": [v.to_dict() for v in spec.variants],
        "scorer": spec.scorer,
        "scorer_options": dict(spec.scorer_options),
        "judge": spec.judge.name if spec.judge else None,
        "embedder": spec.embedder.name if spec.embedder else None,
        "rubric": spec.rubric,
        "params": {k: getattr(spec.params, k) for k in PARAM_KEYS},
        "cost_cap_usd": spec.cost_cap_usd,
        "concurrency": spec.concurrency,
        "seed": spec.seed,
    }


def dataset_dict(dataset: Dataset) -> dict[str, Any]:
    if dataset.name in datasets.BUILTIN and datasets.builtin(dataset.name) == dataset:
        return {"builtin": dataset.name}
    return {
        "name": dataset.name,
        "kind": dataset.kind,
        "scorer": dataset.scorer,
        "labels": list(dataset.labels),
        "items": [
            {"id": i.id, "input": i.input, "reference": i.reference, "label": i.label, "meta": dict(i.meta)}
            for i in dataset.items
        ],
    }


def from_dict(data: Any) -> Spec:
    """A spec from JSON; anything malformed raises BadInput naming the field."""
    from services.evaluation.engine import Spec, Target

    if not isinstance(data, Mapping):
        raise BadInput("An evaluation spec is a JSON object with a dataset, targets and variants.")
    unknown = set(data) - set(KEYS)
    if unknown:
        raise BadInput(f"Unknown spec fields {', '.join(sorted(map(str, unknown)))}: use {', '.join(KEYS)}.")
    targets = data.get("targets")
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise BadInput("targets must be a list of 'provider' or 'provider:model' strings.")
    raw_variants = data.get("variants") or [{}]
    if not isinstance(raw_variants, list):
        raise BadInput("variants must be a list of objects.")
    judge, embedder = data.get("judge"), data.get("embedder")
    for name, value in (("judge", judge), ("embedder", embedder)):
        if value is not None and not isinstance(value, str):
            raise BadInput(f"{name} must be 'provider' or 'provider:model'.")
    return Spec(
        dataset=dataset_from(data.get("dataset")),
        targets=tuple(Target.parse(t) for t in targets),
        variants=tuple(Variant.from_dict(v) for v in raw_variants),
        scorer=_optional_str(data.get("scorer"), "scorer"),
        scorer_options=_options(data.get("scorer_options")),
        judge=Target.parse(judge) if judge else None,
        embedder=Target.parse(embedder) if embedder else None,
        rubric=_optional_str(data.get("rubric"), "rubric")
        or "Is the answer correct and does it follow the instruction?",
        params=_params(data.get("params")),
        cost_cap_usd=_number(data.get("cost_cap_usd"), "cost_cap_usd"),
        concurrency=int(_number(data.get("concurrency"), "concurrency") or 4),
        seed=int(_number(data.get("seed"), "seed") or 0),
    )


def dataset_from(data: Any) -> Dataset:
    if isinstance(data, str):
        return datasets.builtin(data)
    if not isinstance(data, Mapping):
        raise BadInput(f"dataset must be a built-in name ({', '.join(datasets.BUILTIN)}) or an object with items.")
    if "builtin" in data:
        return datasets.builtin(str(data["builtin"]))
    items = data.get("items")
    if not isinstance(items, list) or not items:
        raise BadInput("dataset.items must be a non-empty list of {id, input, reference} objects.")
    if len(items) > datasets.MAX_ITEMS:
        raise BadInput(f"The dataset has {len(items)} items; the limit is {datasets.MAX_ITEMS}.")
    kind = str(data.get("kind") or "chat")
    if kind not in datasets.KINDS:
        raise BadInput(f"dataset.kind must be one of {', '.join(datasets.KINDS)}.")
    built = []
    for n, raw in enumerate(items, 1):
        row = datasets.aliased(raw) if isinstance(raw, Mapping) else raw  # "answer" is the reference, ...
        if not isinstance(row, Mapping) or not isinstance(row.get("input"), str) or not row["input"].strip():
            raise BadInput(f"dataset item {n} needs an 'input' text (or one of {', '.join(datasets.INPUT_COLUMNS)}).")
        if len(row["input"]) > datasets.MAX_INPUT_CHARS:
            raise BadInput(f"dataset item {n} is longer than {datasets.MAX_INPUT_CHARS} characters.")
        meta = row.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise BadInput(f"dataset item {n}: meta must be an object.")
        meta = {**{k: row[k] for k in ("document", "marker") if k in row}, **meta}
        built.append(
            Item(
                id=str(row.get("id") or n),
                input=row["input"],
                reference=_optional_str(row.get("reference"), f"item {n} reference", coerce=True),
                label=_optional_str(row.get("label"), f"item {n} label", coerce=True),
                meta={str(k): v for k, v in meta.items() if isinstance(v, str | int | float | bool)},
            )
        )
    if len({i.id for i in built}) != len(built):
        raise BadInput("Two dataset items share an id: give each item its own.")
    labels = data.get("labels") or ()
    return Dataset(
        name=str(data.get("name") or "uploaded")[:100],
        kind=kind,
        items=tuple(built),
        description=str(data.get("description") or "")[:500],
        scorer=_optional_str(data.get("scorer"), "dataset.scorer"),
        labels=tuple(str(label) for label in labels) if isinstance(labels, list) else (),
    )


def _optional_str(value: Any, what: str, coerce: bool = False) -> str | None:
    if value is None:
        return None
    if coerce and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise BadInput(f"{what} must be text.")
    return value


def _number(value: Any, what: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"{what} must be a number.")
    return float(value)


def _options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str | int | float | bool) for v in value.values()):
        raise BadInput('scorer_options must be an object of plain values, e.g. {"rel_tol": 0.01}.')
    if "cut_off" in value:
        raise BadInput("cut_off is not a scorer option: it comes from the provider, when a reply hits max_tokens.")
    return {str(k): v for k, v in value.items()}


def _params(value: Any) -> CompletionParams:
    if value is None:
        return CompletionParams(max_tokens=256, temperature=0.0)
    if not isinstance(value, Mapping) or set(value) - set(PARAM_KEYS):
        raise BadInput(f"params may set {', '.join(PARAM_KEYS)}.")
    values = {k: _number(v, f"params.{k}") for k, v in value.items()}
    merged = {"max_tokens": 256.0, "temperature": 0.0, **{k: v for k, v in values.items() if v is not None}}
    return CompletionParams(
        max_tokens=int(merged["max_tokens"]),
        temperature=float(merged["temperature"]),
        top_p=float(merged.get("top_p", 1.0)),
        seed=int(merged["seed"]) if merged.get("seed") is not None else None,
    )
