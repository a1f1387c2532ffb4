"""Label files for the class loss: VGGSound's ytid,start,label,split or file,label, with or
without a header; and labels from subfolder names."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from audiotoken_cli.errors import InputError
from audiotoken_cli.validation import MAX_START_SECONDS

VGGSOUND_CLIP_SECONDS = 10
"""VGGSound clips are 10 s; the paper's file names carry start and end in milliseconds."""

COLUMN_NAMES = {
    "ytid": "ytid", "youtube_id": "ytid", "youtubeid": "ytid", "video_id": "ytid",
    "start": "start", "start_seconds": "start", "start_time": "start",
    "label": "label", "class": "label",
    "split": "split", "set": "split",
    "file": "file", "path": "file", "filename": "file", "file_name": "file",
}
"""Header names a labels CSV may use, mapped to the column they stand for."""


class Labels(dict):
    """key → label, and where each row came from, so that rows naming no file can be said.

    ``rows``: (line, the keys the row added); ``vggsound``: the ytid,start,label layout, whose
    file lists a whole dataset (most rows name clips a user does not have)."""

    def __init__(self, path: Path, vggsound: bool):
        super().__init__()
        self.path, self.vggsound = path, vggsound
        self.rows: list[tuple[int, tuple[str, ...]]] = []


def read_labels(path: Path) -> Labels:
    """Read a labels CSV into key → label.

    Two layouts, each with or without a header row:
    - VGGSound's ``ytid,start,label,split`` (split optional): keys are the ytid and the paper's
      file stem ``{ytid}_{start*1000}_{(start+10)*1000}`` (also ``{ytid}_{start:06d}``).
    - ``file,label``: keys are the file as written, a path relative to the data folder or a stem.
    A ytid listed with two different labels keeps no ytid-only key, since it would be a guess.
    Every malformed row is an InputError naming the file and the line.
    """
    path = Path(path)
    rows = _read_csv_rows(path)
    if not rows:
        raise InputError(f"{path}, line 1: the labels file has no rows")
    header_line = rows[0][0]
    columns, rows = _columns(path, rows)
    if not rows:
        raise InputError(f"{path}, line {header_line}: the labels file has a header but no rows")
    labels = Labels(path, vggsound="ytid" in columns)
    ambiguous: set[str] = set()
    for line, fields in rows:
        record = _record(path, line, fields, columns)
        if labels.vggsound:
            keys = _add_vggsound(labels, ambiguous, path, line, record)
        else:
            keys = (_normal_key(record["file"]),)
            _add_key(labels, path, line, keys[0], record["label"])
        labels.rows.append((line, keys))
    for ytid in ambiguous:
        labels.pop(ytid, None)
    return labels


def unused_rows(labels: Labels, used: set[str]) -> list[str]:
    """One line per ``file,label`` row whose key matched no file (``used``: the keys that did);
    for a VGGSound list, which names a whole dataset, one line for all of them."""
    unused = [(line, keys) for line, keys in labels.rows if not used & set(keys)]
    if not unused:
        return []
    if labels.vggsound:
        line, keys = unused[0]
        return [f"{labels.path}: {len(unused)} of {len(labels.rows)} rows name clips that are not "
                f"in the data folder (first: line {line}, {keys[0]}); their labels are not used"]
    return [f"{labels.path}, line {line}: {keys[0]}: no such file in the data folder; the row is "
            "not used" for line, keys in unused]


def _read_text(path: Path) -> str:
    """The file as text; bytes that are not UTF-8, or NUL bytes, are named by line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise InputError(f"{path}: no such labels file") from error
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror or error})") from error
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise InputError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); "
                         "save the labels as UTF-8") from None
    if "\0" in text:
        line = text[:text.index("\0")].count("\n") + 1
        raise InputError(f"{path}, line {line}: a NUL byte; this is not a text CSV file")
    return text


def _read_csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, stripped fields) for each non-blank, non-comment row."""
    # strict: an unclosed quote or text after a closing quote is an error, not a silent guess
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    kept = []
    previous = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise InputError(f"{path}, line {reader.line_num}: not valid CSV ({error})") from None
        line, previous = previous + 1, reader.line_num
        if any("\n" in field or "\r" in field for field in fields):
            raise InputError(f"{path}, line {line}: a quoted field runs over several lines")
        fields = [field.strip() for field in fields]
        if not any(fields) or fields[0].startswith("#"):
            continue
        kept.append((line, fields))
    return kept


def _columns(path: Path, rows: list[tuple[int, list[str]]]) -> tuple[dict[str, int], list]:
    """Which field holds what, from the header row if there is one, else from the field count."""
    line, first = rows[0]
    names = [COLUMN_NAMES.get(field.lower().replace(" ", "_")) for field in first]
    if "label" in names:  # a header row; columns it does not name are ignored
        columns: dict[str, int] = {}
        for index, name in enumerate(names):
            if name:
                columns.setdefault(name, index)
        if {"ytid", "start"} <= columns.keys():
            columns.pop("file", None)
        elif "file" in columns:
            columns = {name: columns[name] for name in ("file", "label")}
        else:
            raise InputError(f"{path}, line {line}: the header needs ytid,start,label[,split] "
                             f"or file,label; it has {','.join(first)}")
        return columns, rows[1:]
    if len(first) in (3, 4) and _is_number(first[1]):
        return {"ytid": 0, "start": 1, "label": 2}, rows
    if len(first) == 2:
        return {"file": 0, "label": 1}, rows
    raise InputError(f"{path}, line {line}: expected ytid,start,label,split (VGGSound) or "
                     f"file,label; found {len(first)} fields")


def _record(path: Path, line: int, fields: list[str], columns: dict[str, int]) -> dict[str, str]:
    """The named fields of one row, checked."""
    if len(fields) <= max(columns.values()):
        layout = "ytid,start,label,split" if "ytid" in columns else "file,label"
        raise InputError(f"{path}, line {line}: expected {layout}; found {len(fields)} fields")
    record = {name: fields[i] for name, i in columns.items()}
    key = record.get("ytid", record.get("file"))
    if not key or not record["label"]:
        raise InputError(f"{path}, line {line}: empty file name or label")
    if "start" in record and not _start_in_range(record["start"]):
        raise InputError(f"{path}, line {line}: start {record['start']!r} is not a number of "
                         f"seconds in 0..{MAX_START_SECONDS:g}")
    return record


def _add_vggsound(labels: dict[str, str], ambiguous: set[str], path: Path, line: int,
                  record: dict[str, str]) -> tuple[str, ...]:
    """Add the row's keys; return them, the paper's file stem first."""
    ytid, label = record["ytid"], record["label"]
    start = float(record["start"])
    start_ms = round(start * 1000)
    end_ms = round((start + VGGSOUND_CLIP_SECONDS) * 1000)
    keys = [f"{ytid}_{start_ms}_{end_ms}"]
    _add_key(labels, path, line, keys[0], label)
    if start == int(start):
        keys.append(f"{ytid}_{int(start):06d}")
        labels.setdefault(keys[-1], label)
    if labels.setdefault(ytid, label) != label:
        ambiguous.add(ytid)
    return (*keys, ytid)


def _add_key(labels: dict[str, str], path: Path, line: int, key: str, label: str) -> None:
    if labels.setdefault(key, label) != label:
        raise InputError(f"{path}, line {line}: {key} is labelled both {labels[key]!r} and "
                         f"{label!r}")


def _normal_key(text: str) -> str:
    key = text.replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


def _start_in_range(text: str) -> bool:
    return _is_number(text) and 0 <= float(text) <= MAX_START_SECONDS


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def label_for(relative: Path, labels: dict[str, str] | None) -> str | None:
    """A file's label: from ``labels`` by relative path, path without suffix, name or stem;
    without labels, the first folder under the data folder (None for files in the root)."""
    if labels is None:
        return relative.parts[0] if len(relative.parts) > 1 else None
    key = label_key(relative, labels)
    return None if key is None else labels[key]


def label_key(relative: Path, labels: dict[str, str]) -> str | None:
    """The key of ``labels`` that names the file at ``relative``, or None."""
    for key in (relative.as_posix(), relative.with_suffix("").as_posix(), relative.name,
                relative.stem):
        if key in labels:
            return key
    return None


def label_counts(samples) -> dict[str, int]:
    """Clips per label (from subfolders or --labels), most common first; unlabelled as ""."""
    from collections import Counter

    return dict(Counter(s.label or "" for s in samples).most_common())


def describe_labels(samples) -> str:
    counts = label_counts(samples)
    named = {label: n for label, n in counts.items() if label}
    if not named:
        return "no labels (no subfolders or --labels): no class loss"
    text = ", ".join(f"{label} {n}" for label, n in named.items())
    unlabelled = counts.get("", 0)
    return f"labels: {text}" + (f"; {unlabelled} clips unlabelled" if unlabelled else "")
