"""Fixtures for the evaluation tests: a fake model and tiny generated audio (helpers in eval_fakes)."""

from __future__ import annotations

import pytest
import soundfile as sf
from eval_fakes import FREQS, RATE, FakeModel, tone


@pytest.fixture
def fake_model() -> FakeModel:
    return FakeModel()


@pytest.fixture
def tone_files(tmp_path):
    """8 wavs in tmp_path/audio: two per class, different amplitudes. Returns [(relpath, class index)]."""
    (tmp_path / "audio").mkdir()
    files = []
    for i in range(8):
        cls = i % 4
        name = f"audio/clip{i}.wav"
        sf.write(tmp_path / name, tone(FREQS[cls], 0.2 + 0.05 * i), RATE)
        files.append((name, cls))
    return files
