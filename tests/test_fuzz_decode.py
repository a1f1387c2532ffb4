"""A seeded fuzz test of the decoder: mutated real files through decode_windows. Nothing may
escape as an exception, no waveform may hold NaN or infinity, and every failure is an InputError
that names its file."""

from __future__ import annotations

import numpy as np
from fuzz_cases import seed_files, write_cases

from audiotoken_cli.audio.worker import decode_arrays
from audiotoken_cli.config import Window
from audiotoken_cli.errors import InputError

CASES = 300


def test_mutated_files_decode_or_fail_cleanly(tmp_path):
    cases = write_cases(tmp_path / "cases", seed_files(tmp_path / "seeds"), CASES, seed=8)
    seen = 0
    for source, result in decode_arrays(cases, Window(0.0, 2.0), timeout=20):
        seen += 1
        if isinstance(result, np.ndarray):
            assert result.shape == (32000,) and np.isfinite(result).all(), source
        else:
            assert isinstance(result, InputError), (source, result)
            message = str(result)
            assert message.startswith(f"{source}: ") and "\n" not in message
            assert "crashed" not in message, message
    assert seen == CASES
