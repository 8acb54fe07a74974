"""Batched torch log-mel frontends that reproduce transformers' CLAP and Whisper feature extractors.

Both frontends run on the model's device, take a zero-padded batch `[B, T]` plus true `lengths`, and
give the same log-mel values as `ClapFeatureExtractor` / `WhisperFeatureExtractor` (within 1e-3 absolute)
for the same waveform, without a python loop over clips. Mel filters come from
`transformers.audio_utils.mel_filter_bank` with the extractors' own arguments.

Compute is float32 (autocast is switched off inside). The CLAP extractor works in float64: float32 FFT
rounding leaves bands within ~70 dB of the frame's loudest band well inside 1e-3 dB (measured ~2e-4 on
noisy, audio-like test signals), but bands 70-100 dB further down (a pure tone over digital silence) can
move by a few 1e-3 dB; `ClapFrontend(stft_dtype=torch.float64)` removes that (~1e-5) at about twice the
FFT cost. The Whisper extractor itself computes in float32 torch, so WhisperFrontend has no such gap.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from transformers.audio_utils import mel_filter_bank

from clsp import checks

__all__ = ["ClapFrontend"]

_TRUNCATIONS = ("rand_trunc", "fusion")
_PADDINGS = ("repeatpad", "repeat", "pad")


def _validate_batch(waveforms: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """Check a `[B, T]` batch and its lengths; return float32 waveforms and int64 lengths on their device.

    Samples past a clip's length are never read by the frontends (or are zeroed first), so a clip's
    features never depend on the batch it is in."""
    if not isinstance(waveforms, Tensor) or waveforms.dim() != 2:
        shape = tuple(waveforms.shape) if isinstance(waveforms, Tensor) else type(waveforms).__name__
        raise ValueError(f"waveforms must be a 2-D tensor [batch, samples], got {shape}")
    if not waveforms.is_floating_point():
        raise ValueError(f"waveforms must be a real float tensor, got dtype {waveforms.dtype}")
    batch, total = waveforms.shape
    if batch == 0 or total == 0:
        raise ValueError(f"waveforms must be non-empty, got shape {tuple(waveforms.shape)}")
    device = waveforms.device
    if lengths is None:
        lengths = torch.full((batch,), total, dtype=torch.long, device=device)
    else:
        if not isinstance(lengths, Tensor):
            lengths = torch.as_tensor(lengths)
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape ({batch},) to match waveforms, got {tuple(lengths.shape)}")
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise ValueError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
        lengths = lengths.to(device=device, dtype=torch.long)
        bad = (lengths <= 0) | (lengths > total)
        # Value checks read the device (a sync): skipped in the training step (see clsp.checks).
        if checks.enabled() and bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(f"lengths[{i}] = {int(lengths[i])} is outside [1, {total}] (waveforms have {total} samples)")
    # A row sum is non-finite iff the row holds NaN/inf (audio never overflows float32), and costs one
    # read instead of a full boolean tensor.
    if not checks.enabled():
        return waveforms.float(), lengths
    nonfinite = ~torch.isfinite(waveforms.sum(dim=1, dtype=torch.float32))
    if bool(nonfinite.any()):
        i = int(nonfinite.nonzero()[0, 0])
        raise ValueError(f"waveform {i} contains NaN or inf samples")
    return waveforms.float(), lengths


def _host_reads_free(x: Tensor) -> bool:
    """Whether reading `x` on the host costs nothing: on the CPU, and not inside torch.compile (where a
    data-dependent branch splits the graph; compiled code takes the accelerator path everywhere)."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def _zero_past(w: Tensor, lengths: Tensor) -> Tensor:
    """`w` with samples at or past each clip's length set to zero (one elementwise pass, no host read)."""
    # On the CPU a host read waits for nothing, and skipping the pass saves ~15 % of a full batch (not in a
    # compiled or exported graph, which cannot branch on values).
    if _host_reads_free(w) and not torch.compiler.is_exporting() and not (lengths < w.shape[1]).nonzero().numel():
        return w
    inside = torch.arange(w.shape[1], device=w.device) < lengths[:, None]
    return torch.where(inside, w, torch.zeros((), device=w.device))


def _filters(n_fft: int, n_mels: int, f_min: float, f_max: float, sample_rate: int, norm: str | None, scale: str):
    """Mel filters [n_bins, n_mels] as float32, plus the [lo, hi) range of FFT bins any filter touches."""
    fb = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=f_min,
        max_frequency=f_max,
        sampling_rate=sample_rate,
        norm=norm,
        mel_scale=scale,
    )
    used = np.flatnonzero(np.abs(fb).sum(axis=1) > 0)
    lo, hi = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
    return torch.from_numpy(fb).float(), lo, hi


def _mel_power(signal: Tensor, window: Tensor, filters: Tensor, n_fft: int, hop: int, bins: tuple[int, int],
               center: bool, time_major: bool, stft_dtype: torch.dtype = torch.float32) -> Tensor:
    """Float32 mel power spectrogram of `signal` [B, S] (reflect padding when `center`): [B, frames, n_mels]
    if `time_major` else [B, n_mels, frames]. Only the STFT and power run in `stft_dtype`."""
    window = window.to(device=signal.device, dtype=stft_dtype)
    spec = torch.stft(signal.to(stft_dtype), n_fft, hop, window=window, center=center, pad_mode="reflect",
                      return_complex=True)
    # Filters are zero outside [lo, hi): skip those bins (about 40% of the FFT for CLAP's 14 kHz top).
    lo, hi = bins
    parts = torch.view_as_real(spec[:, lo:hi])
    # re^2 + im^2 in two passes (abs() would take a square root; summing a size-2 axis is slow).
    power = parts[..., 0].square().addcmul_(parts[..., 1], parts[..., 1]).float()  # [B, bins, frames]
    filters = filters.to(signal.device)[lo:hi]
    return power.transpose(1, 2) @ filters if time_major else filters.T @ power


class _Frontend(nn.Module):
    """Keeps the filter and window buffers at their own precision through module dtype casts.

    `.to(device)` moves them as usual, but `.half()` / `.to(torch.bfloat16)` / bf16-true training would
    otherwise round them and shift every log-mel value; after any cast they are restored from exact
    masters (built once, on the CPU). Buffers are non-persistent: checkpoints do not carry them (they
    derive from the config)."""

    def __init__(self) -> None:
        super().__init__()
        self._masters: dict[str, Tensor] = {}

    def _register_exact(self, name: str, value: Tensor) -> None:
        self._masters[name] = value
        self.register_buffer(name, value.clone(), persistent=False)

    def _apply(self, fn, recurse: bool = True) -> _Frontend:
        super()._apply(fn, recurse)
        for name, master in self._masters.items():
            buf = self._buffers[name]
            if buf is not None and buf.dtype != master.dtype:
                self._buffers[name] = master.to(buf.device)
        return self


class ClapFrontend(_Frontend):
    """Log-mel (dB) frontend matching `transformers.ClapFeatureExtractor` (LAION-CLAP HTSAT input).

    `forward` returns `(input_features, is_longer)`: `[B, 1, frames, n_mels]` for `rand_trunc` or
    `[B, 4, frames, n_mels]` for `fusion`, with `frames = max_samples // hop_length + 1` (1001), and
    `is_longer` `[B]` bool. As in the extractor, `rand_trunc` uses Slaney-scale, Slaney-normalised filters
    and `fusion` HTK-scale unnormalised ones (what the original LAION code used for each mode).

    Randomness (crop of long clips): in training mode the global torch RNG or `generator`; in eval mode
    deterministic centre choices, so inference embeddings are reproducible; or explicit `offsets`.

    `stft_dtype=torch.float64` runs the STFT in float64 like the extractor, for parity also in bands lying
    70+ dB under the frame's loudest band, where float32 FFT rounding can move values by a few 1e-3 dB;
    float32 (default) is about twice as fast and what training should use.

    One deliberate difference: the fused global view keeps `n_mels` bins (the extractor resizes it to a
    hard-coded 64, which is the same thing for the standard 64-bin setting).
    """

    def __init__(self, sample_rate: int = 48000, n_mels: int = 64, n_fft: int = 1024, hop_length: int = 480,
                 f_min: float = 50.0, f_max: float = 14000.0, max_seconds: float = 10.0,
                 truncation: str = "rand_trunc", padding: str = "repeatpad",
                 stft_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if truncation not in _TRUNCATIONS:
            raise ValueError(f"truncation must be one of {_TRUNCATIONS}, got {truncation!r}")
        if padding not in _PADDINGS:
            raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
        max_samples = max_seconds * sample_rate
        if max_samples != int(max_samples) or max_samples <= n_fft:
            raise ValueError(f"max_seconds * sample_rate must be a whole number of samples > n_fft, got {max_samples}")
        self.sample_rate, self.n_mels, self.n_fft, self.hop_length = sample_rate, n_mels, n_fft, hop_length
        if stft_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"stft_dtype must be torch.float32 or torch.float64, got {stft_dtype}")
        self.f_min, self.f_max, self.truncation, self.padding = f_min, f_max, truncation, padding
        self.stft_dtype = stft_dtype
        self.max_samples = int(max_samples)
        self.frames = self.max_samples // hop_length + 1
        norm, scale = (None, "htk") if truncation == "fusion" else ("slaney", "slaney")
        filters, lo, hi = _filters(n_fft, n_mels, f_min, f_max, sample_rate, norm, scale)
        self._bins = (lo, hi)
        self._register_exact("mel_filters", filters)
        # float64 window: cast to the STFT dtype per call (a float32-rounded window alone adds leakage that
        # moves bands 70 dB under the peak by ~1e-3 dB against the float64 extractor).
        self._register_exact("window", torch.hann_window(n_fft, periodic=True, dtype=torch.float64))

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_mels={self.n_mels}, n_fft={self.n_fft}, hop_length="
                f"{self.hop_length}, f_min={self.f_min}, f_max={self.f_max}, max_samples={self.max_samples}, "
                f"truncation={self.truncation!r}, padding={self.padding!r}, stft_dtype={self.stft_dtype}")

    def _log_mel(self, signal: Tensor, center: bool) -> Tensor:
        """dB mel [B, frames, n_mels], as `spectrogram(..., power=2, log_mel='dB')` with mel_floor 1e-10."""
        mel = _mel_power(signal, self.window, self.mel_filters, self.n_fft, self.hop_length, self._bins, center,
                         True, self.stft_dtype)
        return 10.0 * torch.log10(mel.clamp_min(1e-10))

    def _uniform(self, shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> Tensor:
        if generator is None:  # torch.rand(generator=None) fails to trace with dynamic shapes (torch.compile)
            return torch.rand(shape, device=device, dtype=torch.float64)
        return torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64).to(device)

    def _pick(self, starts: Tensor, counts: Tensor, generator: torch.Generator | None) -> Tensor:
        """One start in [starts, starts + counts) per entry: random when training, the centre in eval."""
        if not self.training:
            return starts + counts // 2
        u = self._uniform(tuple(counts.shape), counts.device, generator)
        return starts + torch.minimum((u * counts).long(), counts - 1)

    def _window(self, w: Tensor, lengths: Tensor, crop: Tensor | None) -> Tensor:
        """The extractor's fixed-length waveform per clip [B, max_samples]: long clips cropped at `crop`,
        short ones padded per `padding`. Reads no sample at or past a clip's length."""
        n = self.max_samples
        if w.shape[1] < n:  # then every clip is short
            return self._pad_short(w, lengths)
        if w.shape[1] == n:
            signal = w  # clips cut to the window upstream (the training reader, the one place it is cut)
        else:
            # Row b's window starting at crop[b], copied from a strided view: no [B, n] index tensor.
            signal = w.unfold(1, n, 1)[torch.arange(w.shape[0], device=w.device), crop]
        short = lengths < n
        if _host_reads_free(w):
            # On the CPU a host read waits for nothing, while padding every row costs as much as the
            # log-mel itself (32 x 10 s: 0.31 s of 0.71 s): pad only the short rows.
            rows = short.nonzero()[:, 0]
            if rows.numel():
                signal = signal.index_copy(0, rows, self._pad_short(w[rows, :n], lengths[rows]))
            return signal
        # On an accelerator, selecting the short rows would be a host read (a sync): pad every row and
        # pick per row instead.
        padded = self._pad_short(w[:, :n], lengths.clamp_max(n))
        return torch.where(short[:, None], padded, signal)

    def _pad_short(self, w: Tensor, lengths: Tensor) -> Tensor:
        """Clips shorter than the window padded to it by one gather: sample i is x[i % L], kept while
        i < limit (repeatpad: whole copies, as `np.tile(x, n // L)`; repeat: all; pad: the clip itself)."""
        n = self.max_samples
        ar = torch.arange(n, device=w.device)
        length = lengths[:, None]
        signal = w.gather(1, ar % length)
        if self.padding == "repeat":
            return signal
        limit = (n // length) * length if self.padding == "repeatpad" else length
        return torch.where(ar < limit, signal, torch.zeros((), device=w.device))

    def _full_log_mel(self, w: Tensor, lengths: Tensor) -> Tensor:
        """dB mel of each whole clip [b, 1 + max_len // hop, n_mels], each reflect-padded at its own end
        (frames past a clip's own count are junk and never read)."""
        p = self.n_fft // 2
        longest = int(lengths.max())
        padded = torch.nn.functional.pad(w[:, :longest], (p, p))
        padded[:, :p] = w[:, 1:p + 1].flip(1)  # left reflection, identical for every clip
        k = torch.arange(p, device=w.device)
        length = lengths[:, None]
        # Right reflection about each clip's last sample: x[L + k] := x[L - 2 - k].
        padded.scatter_(1, length + p + k, w.gather(1, length - 2 - k))
        return self._log_mel(padded, center=False)

    def _fusion(self, mel: Tensor, lengths: Tensor, offsets: Tensor | None,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """The extractor's 4-channel fusion input from whole-clip mels; clips with exactly one window of
        frames get the mel stacked 4 times and is_longer False."""
        b, chunk, device = mel.shape[0], self.frames, mel.device
        total = 1 + lengths // self.hop_length
        fused = total > chunk
        # np.array_split of range(total - chunk + 1) into 3 parts; empty parts fall back to [0] as in the extractor.
        n = (total - chunk + 1)[:, None]
        part = torch.arange(3, device=device)
        sizes = n // 3 + (part < n % 3).long()
        starts = torch.cumsum(sizes, 1) - sizes
        empty = sizes == 0
        starts, sizes = starts.masked_fill(empty, 0), sizes.masked_fill(empty, 1)
        if offsets is None:
            offsets = self._pick(starts, sizes, generator)
        else:
            offsets = offsets.to(device=device, dtype=torch.long)
            bad = fused[:, None] & ((offsets < 0) | (offsets > total[:, None] - chunk))
            if bool(bad.any()):
                raise ValueError(f"fusion offsets of clip(s) {bad.any(1).nonzero()[:, 0].tolist()} are outside "
                                 "[0, frames - window frames]")
        offsets = torch.where(fused[:, None], offsets, torch.zeros((), dtype=torch.long, device=device))
        rows = torch.arange(b, device=device)[:, None, None]
        chunks = mel[rows, offsets[:, :, None] + torch.arange(chunk, device=device)]  # [b, 3, chunk, n_mels]
        # Bilinear shrink of the whole mel to `chunk` frames (torch's align_corners=False rule, in float32 like
        # F.interpolate); the mel axis keeps its size so only time is interpolated. Batched over clips of
        # different lengths, so done by hand rather than by F.interpolate.
        scale = total.float()[:, None] / chunk
        src = ((torch.arange(chunk, device=device) + 0.5) * scale - 0.5).clamp_min(0)
        i0 = torch.minimum(src.floor().long(), total[:, None] - 1)
        i1 = i0 + (i0 < total[:, None] - 1).long()
        lam = (src - i0).clamp(0, 1)[..., None]
        rows = rows[:, 0]
        shrink = mel[rows, i0] * (1 - lam) + mel[rows, i1] * lam
        out = torch.cat([shrink[:, None], chunks], dim=1)
        stacked = mel[:, None, :chunk].expand(-1, 4, -1, -1)
        return torch.where(fused[:, None, None, None], out, stacked), fused

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None, *, generator: torch.Generator | None = None,
                offsets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Log-mel input and is_longer for a zero-padded batch `waveforms` [B, T] with true `lengths` [B].

        `offsets` fixes the crops of clips longer than the window: `[B]` sample offsets for `rand_trunc`,
        `[B, 3]` frame offsets of the front/middle/back chunks for `fusion`; entries of shorter clips are ignored.
        """
        w, lengths = _validate_batch(waveforms, lengths)
        device, n = w.device, self.max_samples
        batch = w.shape[0]
        longer = lengths > n
        if offsets is not None:
            want = (batch,) if self.truncation == "rand_trunc" else (batch, 3)
            if tuple(offsets.shape) != want:
                raise ValueError(f"offsets must have shape {want} for truncation={self.truncation!r}, "
                                 f"got {tuple(offsets.shape)}")
        with torch.autocast(device_type=device.type, enabled=False):
            if self.truncation == "rand_trunc":
                if w.shape[1] <= n:  # cut to the window upstream (the training reader) or shorter: no crop to pick
                    return self._log_mel(self._window(w, lengths, None), center=True)[:, None], longer
                span = (lengths - n).clamp_min(0)
                if offsets is None:
                    crop = self._pick(torch.zeros_like(span), span + 1, generator)
                else:
                    crop = offsets.to(device=device, dtype=torch.long)
                    bad = longer & ((crop < 0) | (crop > span))
                    if checks.enabled() and bool(bad.any()):
                        i = int(bad.nonzero()[0, 0])
                        raise ValueError(f"offsets[{i}] = {int(crop[i])} is outside [0, {int(span[i])}]")
                crop = torch.where(longer, crop, torch.zeros_like(crop))
                return self._log_mel(self._window(w, lengths, crop), center=True)[:, None], longer

            # fusion: splitting long from short clips is data dependent (one host read per batch, unlike the
            # rand_trunc path above). Unlike the extractor, we never mark a random clip is_longer when no clip in the batch is
            # longer: that makes a clip's features depend on its batch, which breaks our embedding contract.
            features = w.new_empty(batch, 4, self.frames, self.n_mels)
            is_longer = torch.zeros(batch, dtype=torch.bool, device=device)
            short = (~longer).nonzero()[:, 0]
            if short.numel():
                zero = torch.zeros(short.numel(), dtype=torch.long, device=device)
                mel = self._log_mel(self._window(w[short], lengths[short], zero), center=True)
                features[short] = mel[:, None].expand(-1, 4, -1, -1)
            long = longer.nonzero()[:, 0]
            if long.numel():
                mel = self._full_log_mel(w[long], lengths[long])
                fused, flags = self._fusion(mel, lengths[long], None if offsets is None else offsets[long], generator)
                features[long] = fused
                is_longer[long] = flags
            return features, is_longer

