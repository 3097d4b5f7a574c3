"""Labelled image sets to evaluate image models on: scikit-learn's bundled digits (no network), a
folder the app owner configures, or a zip a visitor uploads.

Every image is decoded through `adapters.inputs.load_image`, so the app's size and
decompression-bomb limits apply, then scaled down to `MAX_SIDE`: a set of thousands of photos
must not hold gigabytes of pixels, and image models look at a few hundred pixels a side anyway.
A zip is read in memory and never extracted.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.errors import BadInput
from adapters.inputs import MAX_IMAGE_BYTES, MAX_LABEL_CHARS, MAX_LABELS, load_image
from services.zip_members import member_name

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
LABELS_FILE = "labels.csv"
MAX_IMAGES = 5_000  # per set: ample for a probe curve (16 shots x 100 classes plus a test half)
MAX_ENTRIES = 20_000  # zip members of any kind, folders and ignored files included
MAX_TOTAL_BYTES = 500 * 2**20  # uncompressed, over all images read from a zip
MAX_ZIP_BYTES = MAX_TOTAL_BYTES  # the upload itself
MAX_LABELS_FILE_BYTES = 5 * 2**20
MAX_SIDE = 384  # images are kept at most this large: CLIP-like models see 224-384 pixels
MAX_TOTAL_PIXELS = 300_000_000  # kept over the whole set, about 900 MB of RGB
Admit = Callable[[int], None]  # told the pixels a set's images declare; raises to refuse them
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGITS_PROMPT = "a photo of the handwritten digit {label}."
DEFAULT_PROMPT = "a photo of a {label}."  # the CLIP paper's default template


@dataclass
class ImageSet:
    """Images with one class label each; `prompt` turns a label into text for zero-shot."""

    name: str
    images: list
    labels: list[str]
    label_names: tuple[str, ...]  # the classes, in a fixed order (row order of label embeddings)
    prompt: str  # with a {label} field

    def prompts(self) -> list[str]:
        """One zero-shot text per class, in `label_names` order."""
        return [self.prompt.format(label=label) for label in self.label_names]


def digits(size: int = 64, per_class: int | None = None) -> ImageSet:
    """scikit-learn's 1,797 handwritten 8x8 digits as size x size RGB images: dark ink on white with
    a margin (as digits are written and photographed), smoothed by bilinear upscaling, not blocky."""
    import numpy as np
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits

    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 1024:
        raise BadInput(f"The digit image size must be a whole number of pixels between 8 and 1024 (got {size!r}).")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise BadInput(f"per_class must be a whole number of at least 1, or None for all (got {per_class!r}).")
    data = load_digits()
    pixels = np.asarray(data.images, dtype=np.float64)  # 0 (blank) .. 16 (ink)
    targets = np.asarray(data.target)
    keep = np.arange(len(targets))
    if per_class is not None:  # the first images of each class, so that a set is the same every time
        keep = np.sort(np.concatenate([np.flatnonzero(targets == d)[:per_class] for d in range(10)]))
    inner = max(1, round(size * 5 / 7))  # a white margin around the digit, in MNIST's proportions (20 of 28)
    images, labels = [], []
    for i in keep:
        gray = np.clip(255.0 - pixels[i] * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
        digit = PILImage.fromarray(gray).resize((inner, inner), PILImage.Resampling.BILINEAR)  # 2-D uint8: "L"
        canvas = PILImage.new("L", (size, size), 255)
        canvas.paste(digit, ((size - inner) // 2, (size - inner) // 2))
        images.append(canvas.convert("RGB"))
        labels.append(DIGIT_WORDS[int(targets[i])])
    return ImageSet("digits", images, labels, DIGIT_WORDS, DIGITS_PROMPT)


def from_folder(path: str | os.PathLike) -> ImageSet:
    """A set from a folder on the server: one subfolder per class, or a labels.csv (filename,label)
    at its root. Only for folders the app owner configures: a visitor never names a server path."""
    root = Path(path)
    if not root.is_dir():
        raise BadInput(f"The image set folder '{root}' does not exist or is not a folder: check the configured path.")
    entries: dict[str, Callable[[], Any]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
        for filename in sorted(filenames):
            if _ignored(filename):
                continue
            full = Path(dirpath) / filename
            rel = full.relative_to(root).as_posix()
            entries[rel] = _file_reader(full)
            if len(entries) > MAX_ENTRIES:
                raise BadInput(
                    f"The folder '{root.name}' holds more than {MAX_ENTRIES:,} files: point to a smaller image set."
                )
    return _assemble(root.name or str(root), entries, folder=True)


def from_zip(data: bytes, name: str = "uploaded set", admit: Admit | None = None) -> ImageSet:
    """A set from an uploaded zip, read in memory: one folder per class, or a labels.csv
    (filename,label) at its root. Bounded in members, bytes per member and bytes in all; `admit`
    is given the pixels the images' headers declare, before any is decoded, and may refuse them."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BadInput("Expected the zip file's contents: upload a .zip file.")
    if len(data) > MAX_ZIP_BYTES:
        raise BadInput(f"The zip is larger than {MAX_ZIP_BYTES // 2**20} MB: upload fewer or smaller images.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise BadInput("The upload is not a readable zip file: zip a folder of images and upload it again.") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ENTRIES:
            raise BadInput(
                f"The zip holds {len(members):,} entries; the limit is {MAX_ENTRIES:,}: upload a smaller image set."
            )
        entries: dict[str, Callable[[], Any]] = {}
        budget = _Budget()
        for info in members:
            rel = member_name(info.filename, name)
            if info.is_dir() or rel is None:
                continue
            if rel in entries:
                raise BadInput(f"The zip holds '{rel}' twice: remove the duplicate and upload it again.")
            entries[rel] = _member_reader(archive, info, rel, budget)
        return _assemble(name, entries, folder=False, admit=admit)


# --- assembling a set from named entries (shared by folders and zips) -----------------------------


def _assemble(
    name: str, entries: dict[str, Callable[[], Any]], *, folder: bool, admit: Admit | None = None
) -> ImageSet:
    """Labels from labels.csv or from class folders, then every labelled image decoded, once
    `admit` has accepted the pixels their headers declare."""
    where = "folder" if folder else "zip"
    entries = _strip_common_folder(entries)
    if LABELS_FILE in entries:
        labelled = _labels_from_csv(entries[LABELS_FILE], entries, where)
    else:
        labelled = _labels_from_folders(entries, where)
    if not labelled:
        raise BadInput(
            f"The {where} holds no images ({', '.join(IMAGE_EXTENSIONS)}): put each class's images in a folder "
            f"named after the class, or list them in a {LABELS_FILE} (filename,label)."
        )
    if len(labelled) > MAX_IMAGES:
        raise BadInput(f"The {where} holds {len(labelled):,} images; the limit is {MAX_IMAGES:,}: use fewer images.")
    label_names = tuple(sorted(set(label for _, label in labelled), key=str.casefold))
    if len(label_names) < 2:
        raise BadInput(
            f"The {where} has images of {len(label_names)} class; evaluating needs at least two: "
            "add a folder (or labels.csv rows) for another class."
        )
    if len(label_names) > MAX_LABELS:
        raise BadInput(f"The {where} has {len(label_names)} classes; the limit is {MAX_LABELS}.")

    if admit is not None:  # the caller's pixel budget, from the headers alone: nothing decoded yet
        admit(sum(_declared_pixels(entries[rel]()) for rel, _ in labelled))  # one member in memory at a time
    images, labels, pixels = [], [], 0
    for rel, label in labelled:
        image = _decoded(rel, entries[rel])
        pixels += image.size[0] * image.size[1]
        if pixels > MAX_TOTAL_PIXELS:
            raise BadInput(
                f"The images hold more than {MAX_TOTAL_PIXELS // 1_000_000} megapixels in all, even at "
                f"{MAX_SIDE} pixels a side: use fewer images."
            )
        images.append(image)
        labels.append(label)
    return ImageSet(name, images, labels, label_names, DEFAULT_PROMPT)


def _strip_common_folder(entries: dict[str, Callable[[], Any]]) -> dict[str, Callable[[], Any]]:
    """Entries relative to the set's real root: a zip of a folder puts everything under that folder."""
    while entries and LABELS_FILE not in entries:
        tops = {rel.split("/", 1)[0] for rel in entries}
        if len(tops) != 1 or any("/" not in rel for rel in entries):
            break
        inner = {rel.split("/", 1)[1]: read for rel, read in entries.items()}
        if LABELS_FILE not in inner and all("/" not in rel for rel in inner):
            break  # the one folder is a class of its own (a set of one class, refused later with that reason)
        entries = inner
    return entries


def _labels_from_folders(entries: dict[str, Callable[[], Any]], where: str) -> list[tuple[str, str]]:
    out = []
    for rel in sorted(entries):
        if not _is_image(rel):
            continue
        if "/" not in rel:
            raise BadInput(
                f"'{rel}' is at the top of the {where}, outside any class folder: put each image in a folder "
                f"named after its class, or add a {LABELS_FILE} (filename,label) at the top."
            )
        out.append((rel, _label(rel.split("/", 1)[0].replace("_", " "), f"the folder '{rel.split('/', 1)[0]}'")))
    return out


def _labels_from_csv(
    read: Callable[[], Any], entries: dict[str, Callable[[], Any]], where: str
) -> list[tuple[str, str]]:
    raw = read()
    if isinstance(raw, Path):
        if raw.stat().st_size > MAX_LABELS_FILE_BYTES:
            raise BadInput(f"{LABELS_FILE} is larger than {MAX_LABELS_FILE_BYTES // 2**20} MB: shorten it.")
        raw = raw.read_bytes()
    if len(raw) > MAX_LABELS_FILE_BYTES:
        raise BadInput(f"{LABELS_FILE} is larger than {MAX_LABELS_FILE_BYTES // 2**20} MB: shorten it.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput(f"{LABELS_FILE} is not UTF-8 text: save it as UTF-8 CSV.") from None
    found: dict[str, str] = {}
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as err:
        raise BadInput(f"{LABELS_FILE} is not valid CSV ({err}): write one 'filename,label' row per image.") from None
    for line, row in enumerate(rows, start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if line == 1 and [cell.strip().casefold() for cell in row[:2]] == ["filename", "label"]:
            continue
        if len(row) != 2:
            raise BadInput(f"{LABELS_FILE} line {line} has {len(row)} fields: write 'filename,label'.")
        rel = member_name(row[0].strip(), LABELS_FILE)
        if rel is None or not _is_image(rel):
            raise BadInput(
                f"{LABELS_FILE} line {line} names '{row[0].strip()[:80]}', which is not an image file inside the "
                f"{where} ({', '.join(IMAGE_EXTENSIONS)}): use paths relative to the {LABELS_FILE} file."
            )
        if rel not in entries:
            raise BadInput(f"{LABELS_FILE} line {line} names '{rel}', which is not in the {where}: add it or fix it.")
        label = _label(row[1], f"{LABELS_FILE} line {line}")
        if found.get(rel, label) != label:
            raise BadInput(f"{LABELS_FILE} gives '{rel}' two labels ('{found[rel]}' and '{label}'): keep one.")
        found[rel] = label
    return sorted(found.items())


def _label(text: str, where: str) -> str:
    label = " ".join(text.split())
    if not label:
        raise BadInput(f"{where[0].upper()}{where[1:]} gives an empty label: name the class.")
    if len(label) > MAX_LABEL_CHARS:
        raise BadInput(f"The label '{label[:40]}...' ({where}) is longer than {MAX_LABEL_CHARS} characters.")
    return label


def _declared_pixels(source: Any) -> int:
    """Width x height from an image's header (nothing decoded); 0 when it has none we can read
    (decoding then says what is wrong with it)."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return int(image.size[0]) * int(image.size[1])
    except (OSError, SyntaxError, ValueError, EOFError, PILImage.DecompressionBombError):
        return 0


def _decoded(rel: str, read: Callable[[], Any]) -> Image:
    """One image through `load_image` (its limits), scaled down to MAX_SIDE; errors name the file."""
    from PIL import Image as PILImage

    try:
        source = read()
        if isinstance(source, bytes):  # a zip member: opened lazily, so load_image checks pixels before decoding
            with warnings.catch_warnings():
                warnings.simplefilter("error", PILImage.DecompressionBombWarning)
                try:
                    source = PILImage.open(io.BytesIO(source))
                    image = load_image(source)
                    image.load()
                except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
                    raise BadInput("it has more pixels than this app decodes: use a smaller image.") from None
                except PILImage.UnidentifiedImageError:
                    raise BadInput("it is not an image this app can read: use PNG, JPEG, WebP or GIF.") from None
                except BadInput:
                    raise
                except (OSError, SyntaxError, ValueError, EOFError):
                    raise BadInput("it is corrupt or truncated: replace it or leave it out.") from None
        else:
            image = load_image(source)
    except BadInput as err:
        raise BadInput(f"The image '{rel}' cannot be used: {_lower_first(str(err))}") from None
    if max(image.size) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    return image


# --- reading folders and zips --------------------------------------------------------------------


class _Budget:
    """Bytes read from a zip so far, against MAX_TOTAL_BYTES (counted as read, not as declared)."""

    def __init__(self) -> None:
        self.used = 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > MAX_TOTAL_BYTES:
            raise BadInput(
                f"The zip uncompresses to more than {MAX_TOTAL_BYTES // 2**20} MB: upload fewer or smaller images."
            )


def _file_reader(full: Path) -> Callable[[], Any]:
    return lambda: full  # load_image opens paths itself (size limit, bomb check); labels.csv is read by its reader


def _member_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo, rel: str, budget: _Budget) -> Callable[[], bytes]:
    limit = MAX_LABELS_FILE_BYTES if rel == LABELS_FILE or rel.endswith("/" + LABELS_FILE) else MAX_IMAGE_BYTES

    counted = False  # a member read twice (its header, then its pixels) counts once against the total

    def read() -> bytes:
        nonlocal counted
        if info.file_size > limit:  # the declared size; what is read is checked too, as it may lie
            raise BadInput(_too_big(rel, info.file_size, limit))
        try:
            with archive.open(info) as member:
                chunks, size = [], 0
                for chunk in _chunks(member):
                    size += len(chunk)
                    if not counted:
                        budget.take(len(chunk))
                    if size > limit:
                        raise BadInput(_too_big(rel, size, limit))
                    chunks.append(chunk)
        except BadInput:
            raise
        except RuntimeError:  # zipfile: "File ... is encrypted, password required"
            raise BadInput(f"'{rel}' in the zip is encrypted: zip the images without a password.") from None
        except NotImplementedError:
            raise BadInput(f"'{rel}' uses a compression this app cannot read: zip it with standard Deflate.") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            raise BadInput(f"'{rel}' in the zip is damaged: zip the images again and upload them.") from None
        counted = True
        return b"".join(chunks)

    return read


def _chunks(member: Any) -> Iterator[bytes]:
    while chunk := member.read(1 << 20):
        yield chunk


def _ignored(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _is_image(rel: str) -> bool:
    return rel.lower().endswith(IMAGE_EXTENSIONS)


def _too_big(rel: str, size: int, limit: int) -> str:
    return f"'{rel}' is {size / 2**20:.1f} MB; the limit is {limit // 2**20} MB per file: use a smaller file."


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text
