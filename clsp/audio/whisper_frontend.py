"""Whisper's log-mel frontend in torch, batched on the model's device, without padding to 30 s
(the shared pieces: `clsp.audio.frontend`)."""

from __future__ import annotations

import torch
from torch import Tensor

from clsp.audio.frontend import _filters, _Frontend, _mel_power, _validate_batch, _zero_past


class WhisperFrontend(_Frontend):
    """Log-mel frontend matching `transformers.WhisperFeatureExtractor`, without padding to 30 s.

    `forward` returns `(features [B, n_mels, F], frame_lengths [B])` with `frame_lengths = lengths // hop`
    (at most `max_seconds * sample_rate // hop`, 3000) and F = min(T, max_samples) // hop: their maximum when
    the batch is padded to its longest clip (F follows the shape, so no host read is needed). Valid frames
    equal the extractor's output for the clip padded to 30 s, padded frames are 0. Clips longer than `max_seconds` are truncated
    to it, as the extractor does (frames beyond 3000 are dropped).
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 80, n_fft: int = 400, hop_length: int = 160,
                 max_seconds: float = 30.0) -> None:
        super().__init__()
        max_samples = max_seconds * sample_rate
        if max_samples != int(max_samples) or max_samples <= n_fft:
            raise ValueError(f"max_seconds * sample_rate must be a whole number of samples > n_fft, got {max_samples}")
        self.sample_rate, self.n_mels, self.n_fft, self.hop_length = sample_rate, n_mels, n_fft, hop_length
        self.max_samples = int(max_samples)
        self.max_frames = self.max_samples // hop_length
        # The extractor's filters: Slaney scale and norm, 0-8000 Hz whatever the sample rate.
        filters, lo, hi = _filters(n_fft, n_mels, 0.0, 8000.0, sample_rate, "slaney", "slaney")
        self._bins = (lo, hi)
        self._register_exact("mel_filters", filters)
        # float64 window: cast to the STFT dtype per call (a float32-rounded window alone adds leakage that
        # moves bands 70 dB under the peak by ~1e-3 dB against the float64 extractor).
        self._register_exact("window", torch.hann_window(n_fft, periodic=True, dtype=torch.float64))

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_mels={self.n_mels}, n_fft={self.n_fft}, "
                f"hop_length={self.hop_length}, max_samples={self.max_samples}")

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Log-mel features [B, n_mels, F] and valid frame counts [B] of a zero-padded batch [B, T]."""
        w, lengths = _validate_batch(waveforms, lengths)
        lengths = lengths.clamp_max(self.max_samples)
        # The extractor zero-pads every clip to max_samples, then reflect-pads by n_fft // 2. Padding only
        # n_fft // 2 + 1 zeros past the longest clip reflects zeros as well, so every frame we compute equals
        # the extractor's; frames we do not compute are all zero input (log10(1e-10) = -10), the floor of any
        # frame, so they never change the per-clip maximum.
        # Shapes follow the batch's width, not its longest length: reading lengths.max() would sync with the
        # device, and collate pads to the longest clip anyway. Frames past a clip's length are zeroed below.
        # sym_min and pad-then-cut keep the graph free of branches on the length when exported (clsp.export);
        # zeroing before the pad lets the CPU skip the pass when every clip fills the batch.
        p = self.n_fft // 2
        width = torch.sym_min(self.max_samples, w.shape[1] + p + 1)
        w = torch.nn.functional.pad(_zero_past(w, lengths), (0, p + 1))[:, :width]
        with torch.autocast(device_type=w.device.type, enabled=False):
            mel = _mel_power(w, self.window, self.mel_filters, self.n_fft, self.hop_length, self._bins, True, False)
            # The extractor drops the STFT's last frame (number max_frames): never count it.
            log = mel[..., : self.max_frames].clamp_min(1e-10).log10()
            peak = log.amax(dim=(1, 2), keepdim=True)  # over the whole padded example, as the extractor
            log = (torch.maximum(log, peak - 8.0) + 4.0) / 4.0
        frame_lengths = lengths // self.hop_length
        frames = torch.sym_min(waveforms.shape[1], self.max_samples) // self.hop_length
        log = log[..., :frames]
        valid = torch.arange(frames, device=log.device) < frame_lengths[:, None, None]
        return torch.where(valid, log, torch.zeros((), device=log.device)), frame_lengths
