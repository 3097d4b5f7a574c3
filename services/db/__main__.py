"""`python -m services.db upgrade [--url URL]`: bring the shared database to the current schema.

The launcher runs the same (`services.db.migrate()`) before it starts workers; run it by hand
before starting app processes yourself. `python -m services.db current` prints the revisions.
"""

from __future__ import annotations

import argparse
import logging
import sys

from services import db


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.db", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["upgrade", "current"])
    parser.add_argument("--url", help=f"the database (default: ${db.ENV})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        url = db.normalise(args.url) if args.url else db.database_url()
        if url is None:
            print(
                f"{db.ENV} is not set and no --url was given: without it each store keeps its own SQLite "
                "file, which is upgraded at its first use.",
                file=sys.stderr,
            )
            return 2
        if args.command == "upgrade":
            db.migrate(url)
        print(f"{db.shown(url)}: {', '.join(db.current(url)) or 'empty'}")
    except db.StorageError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
