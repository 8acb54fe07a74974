"""Test helpers for the evaluation tests: a deterministic fake model and tone generation."""

from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F

# Four "classes": a sine tone at a frequency, named by a word the fake text encoder knows.
WORDS = ["low", "mid", "high", "top"]
FREQS = [200.0, 400.0, 800.0, 1600.0]
RATE = 8000
DIM = 8


def _noise(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(DIM, generator=g)


class FakeModel:
    """encode_audio: one-hot of the nearest tone + a small amplitude-dependent part;
    encode_text: one-hot of the tone word in the text + a small text-hash part. Counts calls."""

    def __init__(self, fingerprint: str = "fake-v1", noise: float = 0.05):
        self.fingerprint = fingerprint
        self.noise = noise
        self.audio_calls = 0
        self.text_calls = 0
        self.device = torch.device("cpu")

    def eval(self):
        return self

    def encode_audio(self, audio, sample_rate=None):
        self.audio_calls += 1
        rate = sample_rate or RATE
        out = []
        for wave in audio:
            wave = np.asarray(wave, dtype=np.float64)
            spec = np.abs(np.fft.rfft(wave))
            freq = np.argmax(spec) * rate / len(wave)
            idx = int(np.argmin(np.abs(np.log(freq / np.array(FREQS)))))
            amp = int(round(float(np.abs(wave).max()) * 1000))
            out.append(F.one_hot(torch.tensor(idx), DIM).float() + self.noise * _noise(amp))
        return F.normalize(torch.stack(out), dim=-1)

    def encode_text(self, texts):
        self.text_calls += 1
        out = []
        for text in texts:
            hits = [i for i, w in enumerate(WORDS) if w in text.split()]
            base = F.one_hot(torch.tensor(hits[0]), DIM).float() if hits else torch.zeros(DIM)
            out.append(base + self.noise * _noise(zlib.crc32(text.encode())))
        return F.normalize(torch.stack(out), dim=-1)


def tone(freq: float, amp: float, seconds: float = 0.05) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
