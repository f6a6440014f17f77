"""Spoken digit strings synthesised from single-digit clips (numpy; no TensorFlow).

A string is one speaker's digits in random order, each clip trimmed of its leading and
trailing silence, given its own loudness, separated by random gaps and placed at a random
offset in a recording of the mode's length, optionally with noise at a random SNR (white, or
a random stretch of a background-noise recording). Training strings are drawn afresh every
epoch from the training clips; the validation and eval strings are drawn once at ingestion
from the validation and eval clips only, so no eval string holds a clip seen in training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from apps.speech.config import TranscribeConfig

# A clip's speech is where its smoothed level comes within this many dB of its peak.
_TRIM_DB = 35.0
_TRIM_SMOOTH_MS = 10.0


def trim_silence(clip: np.ndarray, sample_rate: int) -> np.ndarray:
    """The clip without its leading and trailing stretches quieter than the peak level
    minus 35 dB (levels smoothed over 10 ms)."""
    x = np.asarray(clip, dtype=np.float32)
    if len(x) == 0:
        return x
    width = max(1, int(sample_rate * _TRIM_SMOOTH_MS / 1000))
    level = np.convolve(x.astype(np.float64) ** 2, np.ones(width) / width, mode="same")
    loud = np.flatnonzero(level >= level.max() * 10.0 ** (-_TRIM_DB / 10.0))
    if loud.size == 0:
        return x
    return x[loud[0]:loud[-1] + 1]


@dataclass(frozen=True)
class DigitString:
    """One synthesised recording: its samples, transcript, speaker and source clips."""

    audio: np.ndarray  # float32 [length]
    transcript: str
    speaker: str
    sources: tuple[str, ...]


class DigitPool:
    """Single-digit clips by speaker and digit, trimmed once."""

    def __init__(self, clips: Sequence[np.ndarray], digits: Sequence[str],
                 speakers: Sequence[str], sources: Sequence[str], sample_rate: int):
        self.sample_rate = sample_rate
        self.clips = [trim_silence(c, sample_rate) for c in clips]
        self.digits = list(digits)
        self.speakers = list(speakers)
        self.sources = list(sources)
        self.by_speaker: dict[str, dict[str, list[int]]] = {}
        for i, (d, s) in enumerate(zip(self.digits, self.speakers, strict=True)):
            self.by_speaker.setdefault(s, {}).setdefault(d, []).append(i)
        self.speaker_names = sorted(self.by_speaker)

    def __len__(self) -> int:
        return len(self.clips)


def _noise_stretch(rng: np.random.Generator, length: int,
                   noises: Sequence[np.ndarray]) -> np.ndarray:
    """White noise, or a random stretch of a background recording (looped when short)."""
    if not noises:
        return rng.standard_normal(length).astype(np.float32)
    noise = noises[int(rng.integers(len(noises)))]
    if len(noise) < length:
        noise = np.tile(noise, length // len(noise) + 1)
    start = int(rng.integers(0, len(noise) - length + 1))
    return noise[start:start + length]


def _draw(rng: np.random.Generator, pool: DigitPool, config: TranscribeConfig, length: int,
          n: int):
    """One draw of a speaker, ``n`` digits, their clips and the gaps between them."""
    rate = pool.sample_rate
    speaker = pool.speaker_names[int(rng.integers(len(pool.speaker_names)))]
    available = pool.by_speaker[speaker]
    digits = sorted(available)
    chosen = [digits[int(rng.integers(len(digits)))] for _ in range(n)]
    picks = [available[d][int(rng.integers(len(available[d])))] for d in chosen]
    gaps = rng.uniform(*config.gap_ms, size=max(0, n - 1)) * rate / 1000.0
    speech = sum(len(pool.clips[i]) for i in picks)
    if speech + gaps.sum() > length:  # too long with these gaps: the shortest ones
        gaps = np.full(len(gaps), config.gap_ms[0] * rate / 1000.0)
    return speaker, chosen, picks, gaps, speech + int(gaps.sum())


def compose(rng: np.random.Generator, pool: DigitPool, config: TranscribeConfig,
            length: int, noises: Sequence[np.ndarray] = ()) -> DigitString:
    """One random digit string of ``config.min_digits`` .. ``max_digits`` digits spoken by
    one speaker of ``pool``, in a recording of ``length`` samples. Drawn digits that do not
    fit even with the shortest gaps are drawn again (up to 20 times); after that digits are
    dropped from the end until they fit (a recording too short for its digits)."""
    if len(pool) == 0:
        raise ValueError("compose: expected at least one clip to build strings from")
    for _ in range(20):
        n = int(rng.integers(config.min_digits, config.max_digits + 1))
        speaker, chosen, picks, gaps, total = _draw(rng, pool, config, length, n)
        if total <= length:
            break
    while len(picks) > 1 and total > length:
        chosen, picks, gaps = chosen[:-1], picks[:-1], gaps[:-1]
        total = sum(len(pool.clips[i]) for i in picks) + int(gaps.sum())
    out = np.zeros(length, np.float32)
    position = int(rng.integers(0, max(0, length - total) + 1))
    for k, i in enumerate(picks):
        clip = pool.clips[i][:max(0, length - position)]
        gain = 10.0 ** (rng.uniform(*config.gain_db) / 20.0)
        out[position:position + len(clip)] += gain * clip
        position += len(clip) + (int(gaps[k]) if k < len(gaps) else 0)
        if position >= length:
            break
    if config.noise_probability > 0 and rng.random() < config.noise_probability:
        noise = _noise_stretch(rng, length, noises)
        speech = out[out != 0]
        power = float(np.mean(speech.astype(np.float64) ** 2)) if speech.size else 0.0
        noise_power = float(np.mean(noise.astype(np.float64) ** 2))
        if power > 0 and noise_power > 0:
            snr = rng.uniform(*config.noise_snr_db)
            out += noise * np.float32(np.sqrt(power / noise_power / 10.0 ** (snr / 10.0)))
    peak = float(np.max(np.abs(out)))
    if peak > 0.99:  # keep the 16-bit encoding from clipping
        out *= 0.99 / peak
    return DigitString(out, "".join(chosen), speaker, tuple(pool.sources[i] for i in picks))


def compose_many(pool: DigitPool, config: TranscribeConfig, length: int, n: int, seed: int,
                 noises: Sequence[np.ndarray] = ()) -> list[DigitString]:
    """``n`` strings, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    return [compose(rng, pool, config, length, noises) for _ in range(n)]


def character_errors(reference: str, hypothesis: str) -> int:
    """Levenshtein distance (substitutions, insertions, deletions) between two strings."""
    previous = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, start=1):
        current = [i]
        for j, h in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def string_metrics(references: Sequence[str], hypotheses: Sequence[str]) -> Mapping[str, float]:
    """String accuracy (share of exact transcripts) and character error rate (edits over
    reference characters) of transcripts."""
    if len(references) != len(hypotheses):
        raise ValueError(f"string_metrics: {len(references)} references but "
                         f"{len(hypotheses)} hypotheses")
    edits = sum(character_errors(r, h) for r, h in zip(references, hypotheses, strict=True))
    chars = sum(len(r) for r in references)
    exact = sum(r == h for r, h in zip(references, hypotheses, strict=True))
    return {"string_accuracy": exact / max(1, len(references)),
            "cer": edits / max(1, chars), "strings": float(len(references))}
