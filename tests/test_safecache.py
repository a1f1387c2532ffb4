"""Caches that cannot lie (issue 8 §6): a file replaced in place with the same size and mtime is
not served stale, and a corrupt safetensors copy is detected, deleted and rebuilt."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from factories import make_paper_embedder
from safetensors.torch import load_file

from audiotoken_cli.hashing import cached_sha256, file_sha256
from audiotoken_cli.models.beats import load_beats
from audiotoken_cli.models.embedder import load_embedder
from audiotoken_cli.models.safecache import (
    cache_folder,
    load_beats_fast,
    load_embedder_fast,
)

TINY_BEATS = Path(__file__).parent / "data" / "tiny_beats.pt"


def weights(loaded) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def replace_in_place(path: Path, new: Path) -> None:
    """Write ``new``'s bytes into ``path`` (same inode), then put size and mtime back."""
    before = path.stat()
    data = new.read_bytes()
    assert len(data) == before.st_size  # same architecture, same pickled size
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size, before.st_mtime_ns, before.st_ino)


def test_a_file_replaced_in_place_with_the_same_size_and_mtime_is_not_stale(tmp_path):
    path = make_paper_embedder(tmp_path / "embedder_learned_embeds.bin", 96, 32, seed=1)
    (tmp_path / "new").mkdir()  # the same name: torch.save's zip records it, and so the size
    other = make_paper_embedder(tmp_path / "new" / path.name, 96, 32, seed=2)
    first = weights(load_embedder_fast(path))
    assert same(first, weights(load_embedder_fast(path)))  # served from the copy
    replace_in_place(path, other)
    assert cached_sha256(path) == file_sha256(other)
    again = weights(load_embedder_fast(path))
    assert same(again, weights(load_embedder(other))) and not same(again, first)


def only_copy(prefix: str) -> Path:
    copies = list(cache_folder().glob(f"{prefix}-*.safetensors"))
    assert len(copies) == 1, copies
    return copies[0]


def truncate(copy: Path) -> None:
    copy.write_bytes(copy.read_bytes()[: copy.stat().st_size // 2])


def zero(copy: Path) -> None:
    copy.write_bytes(b"\0" * copy.stat().st_size)


def flip_a_weight(copy: Path) -> None:
    """A valid safetensors file with one changed value: only the recorded digest catches it."""
    data = bytearray(copy.read_bytes())
    data[-5] ^= 0x40
    copy.write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt", [truncate, zero, flip_a_weight])
def test_a_corrupt_embedder_copy_is_rebuilt_with_a_warning(tmp_path, caplog, corrupt):
    path = make_paper_embedder(tmp_path / "embedder_learned_embeds.bin", 96, 32, seed=1)
    expected = weights(load_embedder(path))
    load_embedder_fast(path)
    copy = only_copy("embedder")
    good = {k: v.clone() for k, v in load_file(copy).items()}  # not a view of the file
    corrupt(copy)
    with caplog.at_level(logging.WARNING, logger="audiotoken"):
        loaded = weights(load_embedder_fast(path))
    assert same(loaded, expected)
    messages = [r.getMessage() for r in caplog.records if r.name == "audiotoken"]
    assert len(messages) == 1 and "is corrupt" in messages[0] and str(copy) in messages[0]
    assert "\n" not in messages[0]
    assert same(load_file(copy), good)  # rebuilt from the source
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="audiotoken"):
        assert same(weights(load_embedder_fast(path)), expected)
    assert not caplog.records  # and trusted again


def test_a_corrupt_beats_copy_is_rebuilt(tmp_path, caplog):
    source = tmp_path / "BEATs.pt"
    shutil.copyfile(TINY_BEATS, source)
    expected = load_beats(source).state_dict()
    load_beats_fast(source)
    copy = only_copy("beats")
    truncate(copy)
    with caplog.at_level(logging.WARNING, logger="audiotoken"):
        model = load_beats_fast(source)
    assert any("is corrupt" in r.getMessage() for r in caplog.records)
    got = model.state_dict()
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)


def test_a_copy_from_before_digests_is_checked_by_loading(tmp_path):
    path = make_paper_embedder(tmp_path / "embedder_learned_embeds.bin", 96, 32, seed=1)
    load_embedder_fast(path)
    copy = only_copy("embedder")
    digest = copy.with_name(copy.name + ".sha256")
    digest.unlink()
    assert same(weights(load_embedder_fast(path)), weights(load_embedder(path)))
    assert digest.read_text().strip() == file_sha256(copy)  # recorded now
