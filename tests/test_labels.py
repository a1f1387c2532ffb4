"""Labels CSVs from anywhere: every malformed row is one InputError naming the file and the line,
never a crash (issue 8 §4); plus property-based tests of the reader and the window options."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiotoken_cli.config import Window
from audiotoken_cli.errors import InputError, UsageError
from audiotoken_cli.training.labels import read_labels
from audiotoken_cli.validation import check_window


def write(tmp_path: Path, data: bytes | str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("data, line, words", [
    ("ytid,start,label\nabc,1e308,dog\n", 2, "in 0..604800"),
    ("abc,1e308,dog,train\n", 1, "in 0..604800"),
    ("abc,1,dog,train\nabd,1e308,cat,train\n", 2, "in 0..604800"),
    ("ytid,start,label\nabc,-1,dog\n", 2, "start '-1'"),
    ("ytid,start,label\nabc,nan,dog\n", 2, "start 'nan'"),
    ("ytid,start,label\nabc,inf,dog\n", 2, "start 'inf'"),
    ("ytid,label,file\nabc,dog,x.wav\nabc,cat,x.wav\n", 3, "labelled both"),  # no start column
    ("ytid,label\nabc,dog\n", 1, "the header needs"),
    (b"file,label\na.wav,dog\nb.wav,\xff\xfecat\n", 3, "not UTF-8"),
    ("file,label\na.wav,d\0og\n", 2, "NUL byte"),
    ("file,label\na.wav,dog\nb.wav\n", 3, "found 1 fields"),
    ("", 1, "no rows"),
    ("\n\n# only a comment\n", 1, "no rows"),
    ("file,label\n", 1, "header but no rows"),
    ('file,label\na.wav,dog\n"b\nc.wav",cat\n', 3, "several lines"),
    ('file,label\na.wav,"dog\n', 2, "not valid CSV"),
    ('file,label\na.wav,"dog"x\n', 2, "not valid CSV"),
    ("file,label\na.wav,dog\na.wav,cat\n", 3, "labelled both 'dog' and 'cat'"),
    ("ytid,start,label\nabc,1,dog\nabc,1,cat\n", 3, "labelled both"),
])
def test_each_malformed_row_names_file_and_line(tmp_path, data, line, words):
    path = write(tmp_path, data)
    with pytest.raises(InputError) as caught:
        read_labels(path)
    message = str(caught.value)
    assert message.startswith(f"{path}, line {line}:"), message
    assert words in message and "\n" not in message


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path):
    path = write(tmp_path, "\ufefffile,label\na.wav,dog\n".encode())
    assert read_labels(path) == {"a.wav": "dog"}


def test_a_huge_start_in_range_still_reads(tmp_path):
    path = write(tmp_path, "ytid,start,label\nabc,604800,dog\n")
    assert read_labels(path)["abc_604800000_604810000"] == "dog"


def test_duplicate_rows_with_the_same_label_are_fine(tmp_path):
    path = write(tmp_path, "file,label\na.wav,dog\na.wav,dog\n")
    assert read_labels(path) == {"a.wav": "dog"}


# --- properties ------------------------------------------------------------------------------

ERROR_LINE = re.compile(r"^.*labels\.csv(, line [1-9]\d*)?: [^\n]+$")


def check_outcome(path: Path) -> None:
    """Either a dict of str → str, or an InputError / UsageError naming the file and a line."""
    try:
        labels = read_labels(path)
    except (InputError, UsageError) as error:
        message = str(error)
        assert message.startswith(f"{path}, line "), message
        assert ERROR_LINE.match(message), message
        return
    assert isinstance(labels, dict)
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in labels.items())


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One labels.csv, rewritten by every example (a module fixture: hypothesis reuses it)."""
    return tmp_path_factory.mktemp("labels") / "labels.csv"


FIELD = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["ytid", "start", "label", "file", "split", "1e308", "-1", "nan", "inf", "0",
                     "10.5", "1e-300", "", " ", "#x", '"', "\ufeff", "\0", "\r\n"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_reads_or_names_a_line(scratch, text):
    scratch.write_text(text, encoding="utf-8", newline="")
    check_outcome(scratch)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_read_or_name_a_line(scratch, data):
    scratch.write_bytes(data)
    check_outcome(scratch)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(FIELD, min_size=0, max_size=6), max_size=8))
def test_any_rows_read_or_name_a_line(scratch, rows):
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    scratch.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    check_outcome(scratch)


NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(min_value=-(10**400), max_value=10**400))


@settings(max_examples=500, deadline=None)
@given(NUMBER, NUMBER)
def test_window_options_are_accepted_exactly_in_range(start, duration):
    window = Window(start=start, duration=duration)
    try:
        as_floats = float(start), float(duration)
    except OverflowError:
        as_floats = None
    valid = as_floats is not None and all(math.isfinite(x) for x in as_floats) \
        and 0 <= as_floats[0] <= 604800 and 0.01 <= as_floats[1] <= 3600
    if valid:
        check_window(window)
        assert 0 < window.num_samples <= 3600 * 16_000
    else:
        with pytest.raises(UsageError, match=r"^--(start|duration) .* must be in [\d.]+\.\.\d+$"):
            check_window(window)
