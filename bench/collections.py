"""Collections: a persistent collection of 1M unit vectors of 512 dims, reopened after a restart.

    python -m bench.collections            # 1,000,000 vectors (several minutes, ~7 GB of memory, ~2.2 GB of disk)
    python -m bench.collections --quick    # 20,000 vectors, approximate search from 5,000
    python -m bench.collections --backends [--n 100000 --dim 384]  # embedded vs Qdrant, same vectors

The collection is built through `services.collections.add` from text files (one passage per
vector; the embedding function looks each passage's vector up, so nothing but the store is
measured). Then the collection's files are evicted from the page cache (posix_fadvise DONTNEED)
and a fresh process opens it and runs single queries: `open` time (target <= 2 s), query latency
p95 over every query from the first (<= 20 ms), recall@10 against exact search over the same
vectors (>= 0.95), and its resident memory next to the raw size of the vectors. A second fresh
process, with the files cached, gives the warm figures.

Vectors are clustered like text embeddings, as in `bench.search` (Gaussian topics of unequal
sizes, each spread along its own directions, plus noise, normalised); queries are new draws.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import search, timing

DIM = 512
K = 10
NAME = "bench"
EMBEDDER = "bench:clustered-512"
ROOT = Path(__file__).resolve().parent.parent


def clustered(n: int, seed: int) -> np.ndarray:
    """n unit vectors of 512 dimensions from `bench.search`'s topic mixture."""
    return search.clustered(n, seed, dim=DIM)


def write_files(folder: Path, n: int, per_file: int) -> list[str]:
    """Text files of one-line paragraphs "passage <i>": passage i is vector i."""
    paths = []
    for f, start in enumerate(range(0, n, per_file)):
        path = folder / f"part-{f:03d}.txt"
        path.write_text("\n\n".join(f"passage {i}" for i in range(start, min(n, start + per_file))))
        paths.append(str(path))
    return paths


def evict(folder: Path) -> int:
    """Drop the folder's files from the page cache (clean pages; no privileges needed): bytes asked."""
    asked = 0
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                asked += path.stat().st_size
            finally:
                os.close(fd)
    return asked


def cached_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Cached:"):
                return int(line.split()[1]) * 1024
    return 0


def memory() -> dict:
    """This process's resident memory (MB): all of it, anonymous, file-backed (mapped vectors), peak."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def child(spec_path: str) -> None:
    """The fresh process: open the collection, run the queries one at a time, report as one JSON line."""
    spec = json.loads(Path(spec_path).read_text())
    os.environ["FMG_COLLECTIONS"] = spec["root"]
    started = time.perf_counter()
    from services import collections

    imported = time.perf_counter()
    info = collections.open(NAME)
    opened = time.perf_counter()
    after_open = memory()
    queries = np.load(spec["queries"])
    latencies, found = [], []
    for q in queries:
        t = time.perf_counter()
        hits = collections.search(NAME, q, K, EMBEDDER)
        latencies.append(time.perf_counter() - t)
        found.append([int(h.text.rsplit(" ", 1)[1]) for h in hits if h.text])
    print(
        json.dumps(
            {
                "import_s": imported - started,
                "open_s": opened - imported,
                "search": info.search,
                "items": info.items,
                "latencies_s": latencies,
                "found": found,
                "memory_after_open_mb": after_open,
                "memory_after_queries_mb": memory(),
            }
        )
    )


def fresh_process(spec: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.collections", "--child", str(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the fresh process failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - started
    return out


def recall(truth: np.ndarray, found: list[list[int]]) -> float:
    return float(np.mean([len(set(t) & set(f)) / len(t) for t, f in zip(truth.tolist(), found, strict=True)]))


def build(work: Path, n: int, n_queries: int, per_file: int) -> dict:
    """Generate the vectors, store them through `collections.add`, and compute the exact answers."""
    from services import collections
    from services.search.vector_index import exact_top_k

    started = time.perf_counter()
    vectors, queries = clustered(n, seed=1), clustered(n_queries, seed=2)
    generate_s = time.perf_counter() - started
    files = write_files(work, n, per_file)
    np.save(work / "queries.npy", queries)

    def embed(texts: list[str]) -> np.ndarray:
        return vectors[np.fromiter((int(t.rsplit(" ", 1)[1]) for t in texts), dtype=np.int64, count=len(texts))]

    embedded_at = []
    collections.create(NAME, "text", EMBEDDER)
    started = time.perf_counter()
    added = collections.add(NAME, files, embed, progress=lambda done, total: embedded_at.append(time.perf_counter()))
    add_s = time.perf_counter() - started
    index_s = time.perf_counter() - embedded_at[-1]  # after the last file's commit: the index built
    started = time.perf_counter()
    truth = exact_top_k(vectors, queries, K)
    return {
        "generate_s": generate_s,
        "files": len(files),
        "add_s": add_s,
        "index_s": index_s,
        "info": added.collection,
        "truth": truth,
        "truth_s": time.perf_counter() - started,
    }


def compare_backends(args: argparse.Namespace) -> None:
    """`--backends`: the same vectors in an embedded collection and in a Qdrant one (qdrant-client's
    local mode, in memory: `FMG_VECTOR_URL=:memory:`), built through `collections.add` and searched
    through `collections.search` in this process, each query on both in alternating order."""
    import warnings

    from services import collections
    from services.collections import embedded, qdrant
    from services.search.vector_index import exact_top_k

    warnings.filterwarnings("ignore", message="Local mode is not recommended")  # past 20,000 points
    n, dim = args.n or (4_000 if args.quick else 100_000), args.dim
    n_queries = args.queries or (50 if args.quick else 500)
    if args.quick:
        embedded.APPROX_THRESHOLD = 1_000
    vectors, queries = search.clustered(n, 1, dim=dim), search.clustered(n_queries, 2, dim=dim)
    truth = exact_top_k(vectors, queries, K)

    def embed(texts: list[str]) -> np.ndarray:
        return vectors[np.fromiter((int(t.rsplit(" ", 1)[1]) for t in texts), dtype=np.int64, count=len(texts))]

    backends = {"embedded": None, "qdrant local": ":memory:"}
    built: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="fmg-bench-collections-") as tmp:
        os.environ["FMG_COLLECTIONS"] = str(Path(tmp) / "collections")
        files = write_files(Path(tmp), n, 2_000 if args.quick else 20_000)
        for label, url in backends.items():
            if url is not None:
                os.environ[qdrant.URL_ENV] = url
            name = label.replace(" ", "-")
            collections.create(name, "text", EMBEDDER)
            started = time.perf_counter()
            collections.add(name, files, embed)
            built[label] = {"name": name, "add_s": time.perf_counter() - started, "latencies": [], "found": []}
            built[label]["search"] = collections.open(name).search
        # FMG_VECTOR_URL is set now: the embedded collection is still searched embedded (its backend is recorded)
        for i, q in enumerate(queries):  # a query on both, in alternating order: same load for each
            for label in list(built) if i % 2 == 0 else list(reversed(built)):
                started = time.perf_counter()
                hits = collections.search(built[label]["name"], q, K, EMBEDDER)
                built[label]["latencies"].append((time.perf_counter() - started) * 1e3)
                built[label]["found"].append([int(h.text.rsplit(" ", 1)[1]) for h in hits if h.text])
        qdrant.close_all()
    figures: dict = {"n": n, "dim": dim, "queries": n_queries}
    rows = []
    for label, run in built.items():
        lat = run["latencies"]
        figures[label] = {
            "search": run["search"],
            "add_s": round(run["add_s"], 2),
            "query_ms_p50": round(timing.median(lat), 3),
            "query_ms_p95": round(timing.percentile(lat, 95), 3),
            f"recall@{K}": round(recall(truth, run["found"]), 4),
        }
        f = figures[label]
        rows.append([label, f["search"], f["add_s"], f["query_ms_p50"], f["query_ms_p95"], f[f"recall@{K}"]])
    timing.table(
        ["backend", "search", "add s", "p50 ms", "p95 ms", "recall@10"],
        rows,
        title=f"{n:,} x {dim} in one collection per backend, searched in this process",
    )
    targets = [timing.target(f"recall@{K}, {label}", figures[label][f"recall@{K}"], 0.95) for label in built]
    notes = [
        "qdrant local = qdrant-client's local mode in memory: the server's API, but exact (brute-force) search "
        "in Python; a Qdrant server searches its HNSW graph (ef " + str(qdrant.HNSW_EF) + ") instead",
        "each query ran on both backends, in alternating order; the embedded store searched from memory",
    ]
    timing.report("collections-backends", args, targets, figures, notes)


def main() -> None:
    p = timing.parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--n", type=int, default=None, help="vectors (default 1,000,000, --backends 100,000; --quick 20,000 / 4,000)"
    )
    p.add_argument("--backends", action="store_true", help="embedded vs Qdrant local mode on the same vectors")
    p.add_argument("--dim", type=int, default=384, help="dimensions, with --backends (default 384)")
    p.add_argument("--queries", type=int, default=None, help="queries, with --backends (default 500; --quick 50)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child)
        return
    if args.backends:
        compare_backends(args)
        return
    n = args.n or (20_000 if args.quick else 1_000_000)
    n_queries = 200 if args.quick else 1000
    per_file = 2_000 if args.quick else 20_000  # corpus.chunk takes 20,000 passages a file at most

    from services.collections import embedded, store

    if args.quick:
        embedded.APPROX_THRESHOLD = 5_000
    with tempfile.TemporaryDirectory(prefix="fmg-bench-collections-") as tmp:
        work = Path(tmp)
        os.environ["FMG_COLLECTIONS"] = str(work / "collections")
        built = build(work, n, n_queries, per_file)
        folder = store.folder(NAME)
        disk = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
        raw_mb = n * DIM * 4 / 2**20

        spec = work / "spec.json"
        spec.write_text(json.dumps({"root": str(work / "collections"), "queries": str(work / "queries.npy")}))
        cached = cached_bytes()
        asked = evict(folder)
        evicted = cached - cached_bytes()
        cold = fresh_process(spec)
        warm = fresh_process(spec)

    runs = {"cold": cold, "warm": warm}
    figures: dict = {
        "n": n,
        "dim": DIM,
        "queries": n_queries,
        "generate_s": round(built["generate_s"], 2),
        "add_s": round(built["add_s"], 2),
        "add_vectors_per_s": round(n / built["add_s"]),
        "index_build_s": round(built["index_s"], 2),
        "items": built["info"].items,
        "search": built["info"].search,
        "raw_vectors_mb": round(raw_mb, 1),
        "disk_mb": {name: round(size / 2**20, 1) for name, size in sorted(disk.items())},
        "evicted_mb": {"asked": round(asked / 2**20, 1), "page_cache_drop": round(evicted / 2**20, 1)},
        "truth_s": round(built["truth_s"], 2),
    }
    rows = []
    for label, run in runs.items():
        lat = np.array(run["latencies_s"]) * 1e3
        figures[label] = {
            "import_s": round(run["import_s"], 3),
            "open_s": round(run["open_s"], 3),
            "process_s": round(run["process_s"], 2),
            "first_query_ms": round(float(lat[0]), 2),
            "query_ms_p50": round(timing.median(lat.tolist()), 3),
            "query_ms_p95": round(timing.percentile(lat.tolist(), 95), 3),
            "query_ms_p95_first_100": round(timing.percentile(lat[:100].tolist(), 95), 3),
            "query_ms_max": round(float(lat.max()), 2),
            f"recall@{K}": round(recall(built["truth"], run["found"]), 4),
            "memory_after_open_mb": run["memory_after_open_mb"],
            "memory_after_queries_mb": run["memory_after_queries_mb"],
        }
        f = figures[label]
        rows.append(
            [
                label,
                f["open_s"],
                f["import_s"],
                f["first_query_ms"],
                f["query_ms_p50"],
                f["query_ms_p95"],
                f[f"recall@{K}"],
                f["memory_after_queries_mb"].get("VmRSS", 0.0),
                f["memory_after_queries_mb"].get("RssFile", 0.0),
                round(raw_mb),
            ]
        )
    timing.table(
        ["page cache", "open s", "import s", "1st ms", "p50 ms", "p95 ms", "recall@10", "RSS MB", "file MB", "raw MB"],
        rows,
        title=f"Collection of {n:,} x {DIM} reopened in a fresh process ({built['info'].search})",
    )
    c = figures["cold"]
    targets = [
        timing.target("open after a restart, page cache evicted", c["open_s"], 2.0, higher_is_better=False, unit=" s"),
        timing.target("query p95, fresh process", c["query_ms_p95"], 20.0, higher_is_better=False, unit=" ms"),
        timing.target(f"recall@{K} against exact search", c[f"recall@{K}"], 0.95),
    ]
    notes = [
        f"built through collections.add from {built['files']} text files: {built['add_s']:.1f} s, of which "
        f"{built['index_s']:.1f} s "
        "for the approximate index after the last file's commit",
        "open = collections.open in a fresh process after imports (import s apart); queries = collections.search, "
        "one at a time, every one timed from the first (cold: pages read from disk as touched)",
        f"evicted with posix_fadvise(DONTNEED): the page cache shrank by {evicted / 2**20:,.0f} MB of "
        f"{asked / 2**20:,.0f} MB asked",
        "RSS = VmRSS after the queries; file MB = its file-backed part (mapped vectors and libraries); raw MB = "
        "the vectors as float32",
    ]
    timing.report("collections", args, targets, figures, notes)


if __name__ == "__main__":
    main()
