"""The procedural demo corpus: synthetic tones whose captions truly describe them.

Every clip is composed from a small vocabulary of factors (pitch, timbre, rhythm,
pitch contour, loudness, background noise colour), so a tiny model can learn the
audio-text mapping in minutes on a CPU, while every caption stays honest. Clips are
drawn with `numpy.random.default_rng` seeded from (seed, split, index): any clip can
be regenerated on its own, in any order, in any process.

    python -m clsp.data.demo OUT_DIR [--seed 0]      # writes OUT_DIR/{train,val,test}/shard-*.tar
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np

from clsp.atomic import write_json_atomic
from clsp.data.writer import ShardWriter

__all__ = ["FACTORS", "build_demo", "caption_words", "generate_clip", "shard_pattern"]

# Bump when the generator changes what it writes, so old corpora on disk are rebuilt.
GENERATOR_VERSION = 2
SPLITS = ("train", "val", "test")

FACTORS: dict[str, tuple[str, ...]] = {
    "pitch": ("low", "mid", "high"),
    "timbre": ("sine", "square", "sawtooth", "noisy"),
    "rhythm": ("continuous", "pulsing", "beeping"),
    "contour": ("steady", "rising", "falling"),
    "loudness": ("quiet", "loud"),
    "background": ("none", "white", "pink", "brown"),
}

# Centre-frequency ranges (Hz), about 0.66 octave wide with 0.9-octave gaps, so a sweep around the
# centre keeps its mean pitch inside the named band. The top stays low enough that at 16 kHz even a
# rising high tone keeps its 3rd harmonic (square and sawtooth must never collapse into a sine).
_PITCH_HZ = {"low": (120.0, 190.0), "mid": (350.0, 560.0), "high": (1000.0, 1600.0)}
_SWEEP_RATIO = (1.5, 2.0)  # total frequency ratio of a rising/falling sweep
# Pulse rate (Hz) and duty cycle per rhythm; "continuous" has neither.
_PULSES = {"pulsing": ((1.5, 2.5), (0.45, 0.6), 0.015), "beeping": ((6.0, 9.0), (0.35, 0.5), 0.006)}
_PEAK = {"quiet": (0.05, 0.1), "loud": (0.5, 0.9)}  # ~20 dB apart
_NOISE_SLOPE = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f**slope
_SNR_DB = (8.0, 14.0)  # tone over background: noise clearly audible, tone clearly dominant
_MAX_HARMONICS = 12

# Caption vocabulary. Each factor owns its words (no word is shared between factors),
# so flipping one word in a hard negative changes exactly one attribute.
_TIMBRE_SHORT = {"sine": "sine", "square": "square", "sawtooth": "sawtooth", "noisy": "noisy"}
_TIMBRE_LONG = {
    "sine": ("pure sine tone", "smooth sine tone", "mellow, pure sine tone"),
    "square": ("hollow square tone", "square tone with a hollow sound"),
    "sawtooth": ("buzzy sawtooth tone", "bright, buzzy sawtooth tone", "harsh sawtooth buzz"),
    "noisy": ("rough, noisy tone", "noisy tone with a rough sound", "rough and noisy tone"),
}
_RHYTHM_LONG = {
    "continuous": (
        "It is one continuous sound throughout",
        "It is one continuous, sustained sound",
        "It is continuous, sustained throughout",
    ),
    "pulsing": (
        "It repeats in slow, regular pulses",
        "It is heard in slow pulses",
        "It pulses at a slow rate",
    ),
    "beeping": ("It repeats in fast, short beeps", "It is heard in fast beeps", "It beeps at a fast rate"),
}
_CONTOUR_LONG = {
    "steady": (
        "its pitch is steady",
        "its pitch is steady and flat",
        "its pitch is constant and steady",
    ),
    "rising": (
        "its pitch is rising",
        "its pitch rises upward",
        "its pitch is gliding upward, rising to the end",
    ),
    "falling": (
        "its pitch is falling",
        "its pitch falls downward",
        "its pitch is gliding downward, falling to the end",
    ),
}
_BACKGROUND_LONG = {
    "none": ("The background is silent.", "It plays over a silent background."),
    "white": ("A white noise hiss plays in the background.", "White noise is heard in the background."),
    "pink": ("A pink noise hiss plays in the background.", "Pink noise is heard in the background."),
    "brown": ("A brown noise rumble plays in the background.", "Brown noise is heard in the background."),
}
_SOURCE_LONG = (
    "A {loud}, {timbre} plays at a {pitch} pitch.",
    "The clip is a {loud}, {pitch}-pitched {timbre}.",
    "This recording is a {loud}, {timbre} with a {pitch} pitch.",
)
# Words that must appear in a clip's captions for each attribute value (what the tests check).
_VALUE_WORDS = {
    "pitch": {"low": "low", "mid": "mid", "high": "high"},
    "timbre": dict(_TIMBRE_SHORT),
    "rhythm": {"continuous": "continuous", "pulsing": "puls", "beeping": "beep"},
    "speed": {"slow": "slow", "fast": "fast"},
    "contour": {"steady": "steady", "rising": "ris", "falling": "fall"},
    "loudness": {"quiet": "quiet", "loud": "loud"},
    "background": {"none": "silent", "white": "white", "pink": "pink", "brown": "brown"},
}


def caption_words(attribute: str, value: str) -> str:
    """The word (stem) every caption of a clip with `attribute == value` contains (long captions for all)."""
    try:
        return _VALUE_WORDS[attribute][value]
    except KeyError:
        raise ValueError(f"unknown demo attribute {attribute}={value!r}") from None


def _rng(index: int, seed: int, split: str) -> np.random.Generator:
    # crc32 rather than hash(): stable across processes and Python runs.
    return np.random.default_rng([int(seed), zlib.crc32(split.encode()), int(index)])


def _draw_factors(rng: np.random.Generator) -> dict[str, str]:
    return {name: str(values[rng.integers(len(values))]) for name, values in FACTORS.items()}


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: a fast inverse-FFT length close to n."""
    best = 1 << max(int(n - 1).bit_length(), 1)
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35 << max(int(-(-n // p35) - 1).bit_length(), 0)
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best


def _noise(rng: np.random.Generator, n: int, sample_rate: int, slope: float = 0.0,
           max_hz: float | None = None) -> np.ndarray:
    """Noise [n] float32 of unit RMS with power spectrum ~ 1/f**slope, band-limited to `max_hz`
    (coloured noise also to >= 30 Hz, so brown noise spends its level on an audible rumble, not drift). Drawn in the frequency domain with
    random phases (one inverse FFT of a fast length, only the bins it needs), then cropped."""
    size = _fft_size(n)
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate).astype(np.float32)
    m = freqs.size if max_hz is None else max(int(np.searchsorted(freqs, max_hz, side="right")), 2)
    phase = rng.random(m, dtype=np.float32) * np.float32(2.0 * np.pi)
    spec = np.zeros(freqs.size, dtype=np.complex64)
    spec[:m] = np.cos(phase) + 1j * np.sin(phase)
    if slope:
        spec[:m] *= np.where(freqs[:m] >= 30.0, np.maximum(freqs[:m], 30.0) ** np.float32(-slope / 2.0), 0.0)
    x = np.fft.irfft(spec, size)[:n]
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _tone(f: dict[str, str], rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """The pitched source [n] float32 (unit RMS) following the pitch contour."""
    centre = _log_uniform(rng, *_PITCH_HZ[f["pitch"]])
    if f["contour"] == "steady":
        freq = np.full(n, centre, dtype=np.float32)
    else:
        # Geometric sweep centred on `centre`, so the mean log-pitch stays in its band.
        u = np.linspace(-0.5, 0.5, n, dtype=np.float32)
        log_ratio = np.float32(np.log(rng.uniform(*_SWEEP_RATIO)))
        freq = np.float32(centre) * np.exp(log_ratio * (u if f["contour"] == "rising" else -u))
    # Integrate in float64 cycles (they grow to ~1e4), keep the fraction, synthesise in float32.
    cycles = np.cumsum(freq, dtype=np.float64) / sample_rate + rng.uniform(0.0, 1.0)
    phase = (cycles - np.floor(cycles)).astype(np.float32) * np.float32(2.0 * np.pi)
    if f["timbre"] == "noisy":
        # Band-pass noise that follows the pitch: random in-phase/quadrature modulation of the carrier.
        bw = 0.5 * centre
        x = _noise(rng, n, sample_rate, max_hz=bw) * np.cos(phase)
        x += _noise(rng, n, sample_rate, max_hz=bw) * np.sin(phase)
    else:
        k = np.arange(1, _MAX_HARMONICS + 1)
        if f["timbre"] == "sine":
            amp = (k == 1).astype(np.float32)
        elif f["timbre"] == "square":
            amp = np.where(k % 2 == 1, 1.0 / k, 0.0).astype(np.float32)
        else:
            amp = (1.0 / k).astype(np.float32)
        # Band-limited additive synthesis: drop harmonics that would alias at the top of the sweep.
        amp[k * freq.max() >= 0.45 * sample_rate] = 0.0
        # sin(k p) by the recurrence 2 cos(p) sin((k-1) p) - sin((k-2) p): two trig calls, not K.
        prev, cur, two_cos = np.zeros_like(phase), np.sin(phase), 2.0 * np.cos(phase)
        x = amp[0] * cur
        for a in amp[1 : np.flatnonzero(amp)[-1] + 1]:
            prev, cur = cur, two_cos * cur - prev
            if a:
                x += a * cur
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _envelope(f: dict[str, str], rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / np.float32(sample_rate)
    if f["rhythm"] == "continuous":
        ramp = 0.02
        env = np.minimum(t, t[-1] - t) / np.float32(ramp)
    else:
        (rate_lo, rate_hi), (duty_lo, duty_hi), ramp = _PULSES[f["rhythm"]]
        rate = rng.uniform(rate_lo, rate_hi)
        on = rng.uniform(duty_lo, duty_hi) / rate  # seconds a pulse lasts
        cycles = t * np.float32(rate) + np.float32(rng.uniform(0.0, 1.0))
        pos = (cycles - np.floor(cycles)) / np.float32(rate)  # seconds since the pulse started
        # Linear attack/release ramps so pulses do not click; zero between pulses.
        env = np.minimum(pos, np.float32(on) - pos) / np.float32(ramp)
    return np.clip(env, 0.0, 1.0)


def _captions(f: dict[str, str], rng: np.random.Generator) -> dict[str, list[str]]:
    pitch, loud, timbre = f["pitch"], f["loudness"], _TIMBRE_SHORT[f["timbre"]]
    core = f"{loud}, {pitch}-pitched {timbre} tone"
    contour = f"{f['contour']} in pitch"
    short = {
        "continuous": (f"A continuous {core}, {contour}.", f"A {core}, continuous and {contour}."),
        "pulsing": (f"Slow pulses of a {core}, {contour}.", f"A {core} in slow pulses, {contour}."),
        "beeping": (f"Fast beeps of a {core}, {contour}.", f"A {core} in fast beeps, {contour}."),
    }[f["rhythm"]]

    def pick(options: tuple[str, ...]) -> str:
        return options[rng.integers(len(options))]

    longs = []
    for _ in range(2):
        source = pick(_SOURCE_LONG).format(loud=loud, pitch=pitch, timbre=pick(_TIMBRE_LONG[f["timbre"]]))
        motion = f"{pick(_RHYTHM_LONG[f['rhythm']])}, and {pick(_CONTOUR_LONG[f['contour']])}."
        longs.append(" ".join([source, motion, pick(_BACKGROUND_LONG[f["background"]])]))
    return {"short": [pick(short)], "long": longs}


def generate_clip(
    index: int,
    seed: int = 0,
    split: str = "train",
    sample_rate: int = 16000,
    *,
    min_duration: float = 2.0,
    max_duration: float = 4.0,
) -> tuple[np.ndarray, dict]:
    """Return (audio float32 1-D, meta dict in the shard JSON schema: id, source="demo", duration, captions,
    attributes). The same (index, seed, split, sample_rate, durations) always gives the same clip."""
    if int(index) != index or index < 0:
        raise ValueError(f"demo clip index must be a non-negative integer, got {index!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"demo seed must be a non-negative integer, got {seed!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"demo split must be a non-empty string, got {split!r}")
    if sample_rate < 16000:
        raise ValueError(
            f"demo sample_rate must be at least 16000 Hz (high tones need their harmonics), got {sample_rate}"
        )
    if not 0.5 <= min_duration <= max_duration:
        raise ValueError(
            f"demo durations need 0.5 <= min_duration <= max_duration, got {min_duration}, {max_duration}"
        )
    rng = _rng(index, seed, split)
    f = _draw_factors(rng)
    n = int(round(rng.uniform(min_duration, max_duration) * sample_rate))
    tone = _tone(f, rng, n, sample_rate) * _envelope(f, rng, n, sample_rate)
    mix = tone
    if f["background"] != "none":
        # Level the noise against the tone while it sounds, so pulsed and continuous clips match.
        active = np.sqrt(np.sum(tone**2) / max(np.count_nonzero(tone), 1))
        snr = rng.uniform(*_SNR_DB)
        noise = _noise(rng, n, sample_rate, slope=_NOISE_SLOPE[f["background"]])
        mix = tone + noise * np.float32(active * 10.0 ** (-snr / 20.0))
    peak = rng.uniform(*_PEAK[f["loudness"]])
    audio = (mix * np.float32(peak / (np.abs(mix).max() + 1e-12))).astype(np.float32)
    attributes = dict(f)
    if f["rhythm"] != "continuous":
        attributes["speed"] = "slow" if f["rhythm"] == "pulsing" else "fast"
    meta = {
        "id": f"demo-{split}-{index:06d}",
        "source": "demo",
        "duration": round(n / sample_rate, 4),
        "captions": _captions(f, rng),
        "attributes": attributes,
    }
    return audio, meta


def _marker(seed: int, sample_rate: int, counts: dict[str, int], samples_per_shard: int, codec: str,
            min_duration: float, max_duration: float) -> dict:
    # Plain Python types, so the marker compares equal after a JSON round trip.
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "sample_rate": int(sample_rate),
        "counts": {k: int(v) for k, v in counts.items()},
        "samples_per_shard": int(samples_per_shard),
        "codec": str(codec),
        "min_duration": float(min_duration),
        "max_duration": float(max_duration),
    }


def _is_complete(out_dir: Path, marker: dict) -> bool:
    try:
        found = json.loads((out_dir / "demo.json").read_text())
    except (OSError, ValueError):
        return False
    splits_there = all((out_dir / s / "sizes.json").is_file() for s, n in marker["counts"].items() if n > 0)
    return found == marker and splits_there


def build_demo(
    out_dir: Path | str,
    seed: int = 0,
    sample_rate: int = 16000,
    n_train: int = 2000,
    n_val: int = 200,
    n_test: int = 200,
    samples_per_shard: int = 250,
    codec: str = "flac",
    overwrite: bool = False,
    *,
    min_duration: float = 2.0,
    max_duration: float = 4.0,
) -> dict:
    """Write out_dir/{train,val,test}/shard-XXXXXX.tar + sizes.json; skip if already complete (unless
    overwrite); return {"train": n, "val": n, "test": n}.

    Completion is marked by out_dir/demo.json (seed, counts, sample rate, ...), written last and
    atomically; a missing or different marker rebuilds the corpus from scratch.
    """

    counts = dict(zip(SPLITS, (n_train, n_val, n_test)))
    for split, n in counts.items():
        if int(n) != n or n < 0:
            raise ValueError(f"demo n_{split} must be a non-negative integer, got {n!r}")
    if n_train < 1:
        raise ValueError(f"demo n_train must be at least 1, got {n_train}")
    if samples_per_shard < 1:
        raise ValueError(f"demo samples_per_shard must be at least 1, got {samples_per_shard}")
    out_dir = Path(out_dir)
    marker = _marker(seed, sample_rate, counts, samples_per_shard, codec, min_duration, max_duration)
    if not overwrite and _is_complete(out_dir, marker):
        return dict(counts)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "demo.json").unlink(missing_ok=True)  # an interrupted rebuild must not look complete
    for split, n in counts.items():
        split_dir = out_dir / split
        # Stale shards from an earlier, larger build would otherwise be picked up by shard globs.
        stale = [*split_dir.glob("shard-*.tar"), *split_dir.glob("shard-*.tar.tmp"), split_dir / "sizes.json"]
        for old in stale:
            old.unlink(missing_ok=True)
        if n == 0:
            continue
        with ShardWriter(split_dir, prefix="shard", samples_per_shard=samples_per_shard, codec=codec,
                         sample_rate=sample_rate) as writer:
            for i in range(n):
                audio, meta = generate_clip(i, seed, split, sample_rate,
                                            min_duration=min_duration, max_duration=max_duration)
                writer.write(meta["id"], audio, sample_rate, meta)
    write_json_atomic(out_dir / "demo.json", marker, indent=2, sort_keys=False)
    return dict(counts)


def shard_pattern(out_dir: Path | str, split: str) -> str:
    """Brace pattern naming every shard of a built split, e.g. 'out/train/shard-{000000..000007}.tar'."""
    shards = sorted((Path(out_dir) / split).glob("shard-*.tar"))
    if not shards:
        raise FileNotFoundError(f"no demo shards in {Path(out_dir) / split}; run build_demo first")
    first, last = shards[0].stem.split("-")[-1], shards[-1].stem.split("-")[-1]
    if first == last:
        return str(shards[0])
    return str(Path(out_dir) / split / f"shard-{{{first}..{last}}}.tar")


def main(argv: list[str] | None = None) -> None:

    parser = argparse.ArgumentParser(description="Build the procedural clsp demo corpus.")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=200)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    counts = build_demo(args.out_dir, seed=args.seed, sample_rate=args.sample_rate, n_train=args.n_train,
                        n_val=args.n_val, n_test=args.n_test, overwrite=args.overwrite)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
