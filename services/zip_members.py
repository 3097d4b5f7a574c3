"""Names inside an uploaded zip, read safely: the one rule for every service that unpacks uploads."""

from __future__ import annotations

import posixpath
import re

from adapters.errors import BadInput


def member_name(name: str, archive: str) -> str | None:
    """The member's path inside the zip (forward slashes), or None for hidden and macOS metadata
    files; an absolute path or one with '..' would point outside the zip and is refused."""
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or re.match(r"^[A-Za-z]:", cleaned):
        raise BadInput(f"'{archive}' holds an absolute path ('{name[:80]}'): zip the folder itself and upload it.")
    parts = [part for part in cleaned.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise BadInput(f"'{archive}' holds a path that leads outside it ('{name[:80]}'): zip the folder again.")
    if not parts or any(part.startswith(".") or part == "__MACOSX" for part in parts):
        return None
    return posixpath.join(*parts)
