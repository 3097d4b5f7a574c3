"""Evaluate: many inputs x prompt variants x targets, scored the same way.

- `datasets` (built-in sets in `data/`, uploaded CSV / JSONL), `image_sets` (digits, zips of
  labelled images), `variants` (templates, few-shot, chain of thought, self-consistency,
  best-of-n, injection guards);
- `scoring` (per-item scorers, the judge, answer voting, classification and search metrics) and
  `stats` (means, percentiles, bootstrap intervals);
- `engine` (the concurrent, cached, capped, resumable run), `store` (its SQLite file), `specs`
  (a run as JSON), `report` (the matrix, drill-down and exports), `__main__` (the command line);
- `image_eval` (zero-shot accuracy, `linear_probe` against zero-shot) and `search_eval` (recall@k, MRR).
"""
