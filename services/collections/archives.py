"""More sources for a collection than single uploads: a zip of files, unpacked with limits, and the
server folders the owner lists in `FMG_COLLECTION_FOLDERS` (a visitor never names a server path)."""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.errors import BadInput
from services.collections.sources import IMAGE_SUFFIXES
from services.search.corpus import TEXT_SUFFIXES
from services.zip_members import member_name

MAX_MEMBERS = 5_000  # files taken from one zip
MAX_MEMBER_BYTES = 20 * 2**20
MAX_TOTAL_BYTES = 500 * 2**20  # unpacked, over one zip: what is read is counted, not what the zip declares
MAX_FOLDER_FILES = 5_000
FOLDERS_VAR = "FMG_COLLECTION_FOLDERS"  # os.pathsep-separated folders the owner allows as sources


def suffixes(kind: str) -> tuple[str, ...]:
    return IMAGE_SUFFIXES if kind == "image" else (*TEXT_SUFFIXES, ".csv")


def expand(files: Sequence[Any], kind: str, scratch: Path) -> list[str]:
    """The uploads as file paths, each zip replaced by the files it holds (unpacked into `scratch`,
    named after their path inside the zip so two folders' "1.png" stay apart)."""
    out = []
    for f in files or ():
        raw = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None) or getattr(f, "path", None)
        if not raw:
            raise BadInput("A file could not be read: upload it again.")
        path = Path(os.fspath(raw))
        out += _unzipped(path, kind, scratch) if path.suffix.lower() == ".zip" else [str(path)]
    return out


def _unzipped(path: Path, kind: str, scratch: Path) -> list[str]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise BadInput(f"'{path.name}' is not a readable zip: zip the files again.") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_MEMBERS:
            raise BadInput(f"'{path.name}' holds {len(members):,} files; the limit is {MAX_MEMBERS:,}: split it.")
        out, total = [], 0
        for info in members:
            rel = member_name(info.filename, path.name)
            if rel is None or not rel.lower().endswith(suffixes(kind)):
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                raise BadInput(f"'{rel}' in '{path.name}' is over {MAX_MEMBER_BYTES // 2**20} MB: leave it out.")
            target = scratch / rel.replace("/", "__")
            with archive.open(info) as source, target.open("xb") as sink:
                size = 0
                while chunk := source.read(1 << 20):
                    size, total = size + len(chunk), total + len(chunk)
                    if size > MAX_MEMBER_BYTES or total > MAX_TOTAL_BYTES:
                        raise BadInput(
                            f"'{path.name}' unpacks to more than its limits allow: upload fewer or smaller files."
                        )
                    sink.write(chunk)
            out.append(str(target))
    if not out:
        raise BadInput(f"'{path.name}' holds no {'images' if kind == 'image' else 'text files'} to add.")
    return out


def folders() -> list[str]:
    """The server folders the owner allows as sources (`FMG_COLLECTION_FOLDERS`), those that exist."""
    listed = [f.strip() for f in os.environ.get(FOLDERS_VAR, "").split(os.pathsep) if f.strip()]
    return [f for f in listed if Path(f).expanduser().is_dir()]


def folder_files(folder: str, kind: str) -> list[str]:
    """The files of one allowed folder (its subfolders too) that a collection of `kind` takes."""
    if folder not in folders():  # only what the owner listed, whatever the caller sends
        raise BadInput(f"That is not one of the folders this app's owner allows ({FOLDERS_VAR}).")
    root = Path(folder).expanduser().resolve()
    found = sorted(str(p) for p in root.rglob("*") if _takes(p, root, kind))
    if len(found) > MAX_FOLDER_FILES:
        raise BadInput(f"The folder holds {len(found):,} files; the limit is {MAX_FOLDER_FILES:,}.")
    if not found:
        raise BadInput("The folder holds no files this collection takes.")
    return found


def _takes(path: Path, root: Path, kind: str) -> bool:
    """A visible file of the right kind that really lies inside `root` (a link out of it does not)."""
    hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
    return (
        path.is_file() and path.suffix.lower() in suffixes(kind) and not hidden and path.resolve().is_relative_to(root)
    )


def remove(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
