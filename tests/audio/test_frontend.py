"""The torch frontends against transformers' CLAP and Whisper feature extractors, plus their contracts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ClapFeatureExtractor, WhisperFeatureExtractor

from clsp.audio.frontend import ClapFrontend
from clsp.audio.whisper_frontend import WhisperFrontend

SR_CLAP, SR_WHISPER = 48000, 16000
WINDOW = 480000  # 10 s at 48 kHz
TOL = 1e-3  # the contract: absolute, on log-mel values


def _sound(n: int, sample_rate: int, seed: int) -> np.ndarray:
    """Audio-like test signal: enveloped noise bursts + a tone + a noise floor 40 dB down (real recordings
    have one; bands far below float32 FFT rounding are covered by the float64 test)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    envelope = np.sin(2 * np.pi * 0.7 * t + seed) ** 2
    x = 0.3 * rng.standard_normal(n) * envelope + 0.1 * np.sin(2 * np.pi * (300 + 50 * seed) * t)
    return (x + 0.01 * rng.standard_normal(n)).astype(np.float32)


def _batch(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.zeros(len(clips), int(lengths.max()))
    for i, c in enumerate(clips):
        batch[i, : len(c)] = torch.from_numpy(c)
    return batch, lengths


class _Recorder:
    """Stands in for numpy.random.{choice,randint} in the extractor and records its choices."""

    def __init__(self, seed: int) -> None:
        self.rng, self.values = np.random.RandomState(seed), []

    def choice(self, a, *args, **kwargs):
        value = self.rng.choice(a, *args, **kwargs)
        self.values.append(int(value))
        return value

    def randint(self, *args, **kwargs):
        value = self.rng.randint(*args, **kwargs)
        self.values.append(int(value))
        return value


def _extract_clap(monkeypatch, clips, truncation, padding="repeatpad"):
    extractor = ClapFeatureExtractor(frequency_min=50, frequency_max=14000, truncation=truncation, padding=padding)
    recorder = _Recorder(1)
    with monkeypatch.context() as m:
        m.setattr(np.random, "choice", recorder.choice)
        m.setattr(np.random, "randint", recorder.randint)
        out = extractor(clips, sampling_rate=SR_CLAP, return_tensors="pt")
    return out["input_features"], out["is_longer"][:, 0], recorder.values


# Short (repeat-padded), exactly 10 s, just over 10 s (fusion's one-window corner case) and long.
CLAP_LENGTHS = [70001, WINDOW, WINDOW + 300, WINDOW + 100_003]


def test_clap_rand_trunc_matches_extractor(monkeypatch):
    clips = [_sound(n, SR_CLAP, i) for i, n in enumerate(CLAP_LENGTHS)]
    ref, ref_longer, choices = _extract_clap(monkeypatch, clips, "rand_trunc")
    offsets = torch.zeros(len(clips), dtype=torch.long)
    offsets[[2, 3]] = torch.tensor(choices)  # one randint per clip longer than the window, in order
    features, is_longer = ClapFrontend(truncation="rand_trunc")(*_batch(clips), offsets=offsets)
    assert features.shape == ref.shape == (4, 1, 1001, 64)
    assert is_longer.tolist() == ref_longer.tolist() == [False, False, True, True]
    torch.testing.assert_close(features, ref, atol=TOL, rtol=0)


def test_clap_fusion_matches_extractor(monkeypatch):
    clips = [_sound(n, SR_CLAP, i) for i, n in enumerate(CLAP_LENGTHS)]
    ref, ref_longer, choices = _extract_clap(monkeypatch, clips, "fusion")
    offsets = torch.zeros(len(clips), 3, dtype=torch.long)
    offsets[3] = torch.tensor(choices)  # the only clip with more than one window of frames
    features, is_longer = ClapFrontend(truncation="fusion")(*_batch(clips), offsets=offsets)
    assert features.shape == ref.shape == (4, 4, 1001, 64)
    assert is_longer.tolist() == ref_longer.tolist() == [False, False, False, True]
    torch.testing.assert_close(features, ref, atol=TOL, rtol=0)
    # The fused input really is a global view plus three distinct chunks.
    assert not torch.equal(features[3, 1], features[3, 2])


@pytest.mark.parametrize("padding", ["repeat", "pad"])
def test_clap_short_padding_modes_match_extractor(monkeypatch, padding):
    clips = [_sound(n, SR_CLAP, i) for i, n in enumerate([1000, 200_001])]
    ref, _, _ = _extract_clap(monkeypatch, clips, "rand_trunc", padding)
    features, is_longer = ClapFrontend(padding=padding)(*_batch(clips))
    assert not is_longer.any()
    torch.testing.assert_close(features, ref, atol=TOL, rtol=0)


def test_clap_float64_stft_matches_in_quiet_bands(monkeypatch):
    # A pure tone over digital silence: bands ~100 dB under the tone, where only float64 keeps 1e-3.
    t = np.arange(WINDOW) / SR_CLAP
    tone = (0.2 * np.sin(2 * np.pi * 440 * t) * (t > 3) * (t < 6)).astype(np.float32)
    ref, _, _ = _extract_clap(monkeypatch, [tone], "rand_trunc")
    features, _ = ClapFrontend(stft_dtype=torch.float64)(torch.from_numpy(tone)[None])
    torch.testing.assert_close(features, ref, atol=1e-4, rtol=0)


def test_whisper_matches_extractor():
    # Shorter than a hop (no frames), odd lengths, exactly 30 s, longer than 30 s (truncated), silence.
    lengths = [100, 2 * SR_WHISPER + 77, 5 * SR_WHISPER, 30 * SR_WHISPER, 30 * SR_WHISPER + 1234]
    clips = [_sound(n, SR_WHISPER, i) for i, n in enumerate(lengths)] + [np.zeros(16_000, np.float32)]
    for n_mels in (80, 128):
        extractor = WhisperFeatureExtractor(feature_size=n_mels)
        refs = [extractor(c, sampling_rate=SR_WHISPER, return_tensors="pt")["input_features"][0] for c in clips]
        # The whole batch (padded to 30 s), then only the short clips (padded just past the 5 s clip).
        for subset, frames in ((range(6), 3000), ([0, 1, 2, 5], 500)):
            features, frame_lengths = WhisperFrontend(n_mels=n_mels)(*_batch([clips[i] for i in subset]))
            assert features.shape == (len(subset), n_mels, frames)
            for row, i in enumerate(subset):
                k = int(frame_lengths[row])
                assert k == min(lengths[i] if i < 5 else 16_000, 30 * SR_WHISPER) // 160
                torch.testing.assert_close(features[row, :, :k], refs[i][:, :k], atol=TOL, rtol=0)
                assert (features[row, :, k:] == 0).all()


def test_whisper_pads_only_to_the_longest_clip():
    batch, lengths = _batch([_sound(n, SR_WHISPER, i) for i, n in enumerate([16_000, 24_000])])
    features, frame_lengths = WhisperFrontend()(batch, lengths)
    assert features.shape == (2, 80, 150) and frame_lengths.tolist() == [100, 150]


@pytest.mark.parametrize("truncation", ["rand_trunc", "fusion"])
def test_clap_batch_invariance(truncation):
    clips = [_sound(n, SR_CLAP, i) for i, n in enumerate([50_000, WINDOW, WINDOW + 60_000])]
    frontend = ClapFrontend(truncation=truncation).eval()
    batch, lengths = _batch(clips)
    batch[0, lengths[0]:] = 1.0  # whatever sits past a clip's length must not matter
    together, longer = frontend(batch, lengths)
    for i, clip in enumerate(clips):
        alone, alone_longer = frontend(torch.from_numpy(clip)[None])
        torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=0)
        assert longer[i] == alone_longer[0]
    # No clip longer than the window: nothing is marked longer (the extractor would mark a random one).
    _, longer = frontend(batch[:2, :WINDOW], lengths[:2])
    assert not longer.any()


def test_whisper_batch_invariance():
    clips = [_sound(n, SR_WHISPER, i) for i, n in enumerate([8_000, 40_000])]
    batch, lengths = _batch(clips)
    batch[0, lengths[0]:] = 1.0
    frontend = WhisperFrontend()
    together, _ = frontend(batch, lengths)
    alone, frames = frontend(torch.from_numpy(clips[0])[None])
    torch.testing.assert_close(together[0, :, : int(frames[0])], alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("truncation", ["rand_trunc", "fusion"])
def test_clap_randomness(truncation):
    batch = torch.from_numpy(_sound(3 * WINDOW, SR_CLAP, 0))[None]
    frontend = ClapFrontend(truncation=truncation)
    a, _ = frontend(batch, generator=torch.Generator().manual_seed(3))
    b, _ = frontend(batch, generator=torch.Generator().manual_seed(3))
    c, _ = frontend(batch, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(5)
    d, _ = frontend(batch)
    torch.manual_seed(5)
    assert torch.equal(d, frontend(batch)[0])  # global RNG without a generator
    frontend.eval()
    e, _ = frontend(batch, generator=torch.Generator().manual_seed(3))
    assert torch.equal(e, frontend(batch, generator=torch.Generator().manual_seed(4))[0])  # eval: deterministic


def test_clap_eval_choices_are_centred():
    clip = _sound(WINDOW + 10_000, SR_CLAP, 2)
    frontend = ClapFrontend().eval()
    crop, _ = frontend(torch.from_numpy(clip)[None])
    centre, _ = frontend(torch.from_numpy(clip[5_000 : 5_000 + WINDOW])[None])
    torch.testing.assert_close(crop, centre, atol=1e-5, rtol=0)
    # fusion: 1 + 490000 // 480 = 1021 frames -> 21 chunk starts split 7/7/7; centres 3, 7 + 3, 14 + 3.
    fusion = ClapFrontend(truncation="fusion").eval()
    auto, _ = fusion(torch.from_numpy(clip)[None])
    explicit, _ = fusion(torch.from_numpy(clip)[None], offsets=torch.tensor([[3, 10, 17]]))
    assert torch.equal(auto, explicit)


def test_buffers_are_not_saved_and_keep_their_precision():
    for frontend in (ClapFrontend(), WhisperFrontend()):
        assert frontend.state_dict() == {}
        frontend.to(torch.bfloat16)
        assert frontend.window.dtype == torch.float64 and frontend.mel_filters.dtype == torch.float32
    batch = torch.from_numpy(_sound(WINDOW, SR_CLAP, 0))[None]
    torch.testing.assert_close(ClapFrontend().to(torch.float16)(batch)[0], ClapFrontend()(batch)[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_matches_cpu():
    clips = [_sound(n, SR_CLAP, i) for i, n in enumerate([70_000, WINDOW + 100_003])]
    batch, lengths = _batch(clips)
    for truncation in ("rand_trunc", "fusion"):
        frontend = ClapFrontend(truncation=truncation).eval()
        cpu, cpu_longer = frontend(batch, lengths)
        gpu, gpu_longer = frontend.cuda()(batch.cuda(), lengths.cuda())
        torch.testing.assert_close(gpu.cpu(), cpu, atol=TOL, rtol=0)
        assert torch.equal(gpu_longer.cpu(), cpu_longer)
    batch, lengths = _batch([_sound(n, SR_WHISPER, i) for i, n in enumerate([8_000, 40_000])])
    whisper = WhisperFrontend()
    cpu, _ = whisper(batch, lengths)
    torch.testing.assert_close(whisper.cuda()(batch.cuda(), lengths.cuda())[0].cpu(), cpu, atol=TOL, rtol=0)


@pytest.mark.parametrize("make", [ClapFrontend, WhisperFrontend])
def test_bad_input_errors(make):
    frontend = make()
    ok = torch.zeros(2, 2000)
    with pytest.raises(ValueError, match="2-D"):
        frontend(torch.zeros(2000))
    with pytest.raises(ValueError, match="shape"):
        frontend(ok, torch.tensor([2000]))
    with pytest.raises(ValueError, match=r"lengths\[1\]"):
        frontend(ok, torch.tensor([2000, 0]))
    with pytest.raises(ValueError, match=r"lengths\[0\]"):
        frontend(ok, torch.tensor([2001, 5]))
    with pytest.raises(ValueError, match="integer"):
        frontend(ok, torch.tensor([5.0, 5.0]))
    bad = ok.clone()
    bad[1, 7] = float("nan")
    with pytest.raises(ValueError, match="waveform 1 "):
        frontend(bad)
    bad[1, 7] = float("inf")
    with pytest.raises(ValueError, match="waveform 1 "):
        frontend(bad)
    with pytest.raises(ValueError, match="float"):
        frontend(torch.zeros(2, 2000, dtype=torch.int16))


def test_clap_bad_options_and_offsets():
    with pytest.raises(ValueError, match="truncation"):
        ClapFrontend(truncation="crop")
    with pytest.raises(ValueError, match="padding"):
        ClapFrontend(padding="zeros")
    long = torch.zeros(1, WINDOW + 10)
    with pytest.raises(ValueError, match="offsets"):
        ClapFrontend()(long, offsets=torch.tensor([11]))
    with pytest.raises(ValueError, match="shape"):
        ClapFrontend(truncation="fusion")(long, offsets=torch.tensor([0]))
    with pytest.raises(ValueError, match="offsets"):
        ClapFrontend(truncation="fusion")(torch.zeros(1, 2 * WINDOW), offsets=torch.tensor([[0, 0, 2000]]))
