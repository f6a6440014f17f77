"""WAV files in numpy: a strict RIFF/WAVE reader, 16-bit PCM writer and a band-limited
resampler (no TensorFlow).

The reader takes PCM integer (8-bit unsigned, 16, 24 and 32-bit), IEEE float (32 and
64-bit), G.711 A-law and mu-law, plain or WAVE_FORMAT_EXTENSIBLE, any number of channels,
and says exactly what is wrong with anything else (not a WAV file, truncated, an encoding it
cannot convert, an empty clip). Ingestion and the typed client convert every accepted file
to what the served model decodes in its graph (``tf.audio.decode_wav`` reads 16-bit PCM
only): ``wav16_bytes``, mono 16-bit PCM.

``resample`` is a windowed-sinc (Kaiser) interpolator written as a gather over exact integer
positions; ``apps.speech.preprocessing.resample`` computes the same function in TensorFlow,
so a clip resampled at ingestion and one resampled inside the served graph agree.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

# Sample rates a clip may have: the resampler's filter grows with the down-sampling ratio,
# and below 8 kHz speech has lost most of what tells words apart.
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 48000
# Resampler: zero crossings of the sinc on each side, Kaiser window shape, and the cutoff
# as a share of the lower Nyquist frequency (room for the filter's transition band).
ZERO_CROSSINGS = 8
KAISER_BETA = 6.0
CUTOFF = 0.95
_CHUNK = 1 << 15  # output samples resampled per block (bounds the gather's memory)

_FORMAT_NAMES = {
    0x0001: "PCM", 0x0002: "Microsoft ADPCM", 0x0003: "IEEE float", 0x0006: "A-law",
    0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0031: "GSM 6.10", 0x0050: "MPEG",
    0x0055: "MPEG layer 3", 0xFFFE: "extensible",
}
EXPECTED_ENCODINGS = ("16-bit PCM WAV (also read: 8/24/32-bit integer PCM, 32/64-bit float, "
                      "A-law, mu-law)")


class AudioError(ValueError):
    """An audio file that cannot be used; the message starts with the file and says what
    was expected."""


@dataclass(frozen=True)
class WavInfo:
    """What a WAV header says."""

    sample_rate: int
    channels: int
    encoding: str  # e.g. "16-bit PCM", "32-bit float", "8-bit A-law"
    frames: int


def _alaw_table() -> np.ndarray:
    """G.711 A-law byte -> linear value in [-1, 1]."""
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = np.where(codes & 0x80, 1.0, -1.0)
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return (sign * magnitude / 32768.0).astype(np.float32)


def _mulaw_table() -> np.ndarray:
    """G.711 mu-law byte -> linear value in [-1, 1]."""
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return (sign * magnitude / 32768.0).astype(np.float32)


_ALAW = _alaw_table()
_MULAW = _mulaw_table()


def _chunks(data: bytes, where: str):
    """(chunk id, offset of its payload, declared size) of each chunk after the RIFF
    header."""
    offset = 12
    while offset + 8 <= len(data):
        cid, size = struct.unpack_from("<4sI", data, offset)
        yield cid, offset + 8, size
        offset += 8 + size + (size & 1)  # chunks are word-aligned
    if offset < len(data) and len(data) - offset < 8 and data[offset:].strip(b"\0"):
        raise AudioError(f"{where}: truncated WAV: {len(data) - offset} stray byte(s) after "
                         "the last chunk; expected a complete RIFF chunk header")


def read_wav(data: bytes, where: str) -> tuple[np.ndarray, WavInfo]:
    """Decodes WAV file bytes into float32 samples [frames, channels] in [-1, 1] and the
    header's facts. Raises AudioError naming ``where`` for anything it cannot use."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX", b"RF64") or data[8:12] != b"WAVE":
        what = "an empty file" if not data else f"a file starting with {data[:12]!r}"
        raise AudioError(f"{where}: not a WAV file (got {what}); expected a RIFF/WAVE "
                         f"file, {EXPECTED_ENCODINGS}")
    if data[:4] != b"RIFF":
        raise AudioError(f"{where}: {data[:4].decode()} WAV files are not supported; "
                         f"expected a little-endian RIFF WAV file, {EXPECTED_ENCODINGS}")
    fmt = None
    payload = None
    for cid, start, size in _chunks(data, where):
        if cid == b"fmt ":
            if size < 16 or start + 16 > len(data):
                raise AudioError(f"{where}: truncated WAV: a 'fmt ' chunk of {size} bytes; "
                                 "expected at least 16")
            fmt = data[start:start + size]
        elif cid == b"data":
            available = len(data) - start
            if size > available:
                raise AudioError(f"{where}: truncated WAV: the data chunk declares {size} "
                                 f"bytes of audio, the file holds {available}; expected a "
                                 "complete file")
            payload = data[start:start + size]
            break  # whatever follows the audio (LIST, id3 ...) is metadata
    if fmt is None:
        raise AudioError(f"{where}: truncated WAV: no 'fmt ' chunk before the audio; "
                         f"expected a RIFF/WAVE file, {EXPECTED_ENCODINGS}")
    if payload is None:
        raise AudioError(f"{where}: truncated WAV: no data chunk; expected a RIFF/WAVE file "
                         "holding audio")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == 0xFFFE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # the sub-format GUID's first two bytes
    name = _FORMAT_NAMES.get(tag, f"format tag 0x{tag:04x}")
    if channels < 1 or rate < 1:
        raise AudioError(f"{where}: WAV header says {channels} channel(s) at {rate} Hz; "
                         "expected at least one channel and a positive sample rate")
    kinds = {(1, 8): "u1", (1, 16): "<i2", (1, 24): "i3", (1, 32): "<i4", (3, 32): "<f4",
             (3, 64): "<f8", (6, 8): "alaw", (7, 8): "mulaw"}
    kind = kinds.get((tag, bits))
    if kind is None:
        raise AudioError(f"{where}: unsupported WAV encoding: {bits}-bit {name}; expected "
                         f"{EXPECTED_ENCODINGS}")
    width = bits // 8
    if block_align != width * channels:
        raise AudioError(f"{where}: WAV header block size {block_align} does not match "
                         f"{channels} channel(s) of {bits}-bit samples; expected "
                         f"{width * channels}")
    if len(payload) % block_align:
        raise AudioError(f"{where}: truncated WAV: {len(payload)} bytes of audio is not a "
                         f"whole number of {block_align}-byte frames")
    raw = np.frombuffer(payload, dtype=np.uint8)
    if kind == "u1":
        samples = (raw.astype(np.float32) - 128.0) / 128.0
    elif kind == "alaw":
        samples = _ALAW[raw]
    elif kind == "mulaw":
        samples = _MULAW[raw]
    elif kind == "i3":
        triples = raw.reshape(-1, 3).astype(np.int32)
        value = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        samples = value.astype(np.float32) / float(1 << 23)
    elif kind in ("<i2", "<i4"):
        samples = np.frombuffer(payload, dtype=kind).astype(np.float32) / float(
            1 << (bits - 1))
    else:
        samples = np.frombuffer(payload, dtype=kind).astype(np.float32)
        if not np.all(np.isfinite(samples)):
            raise AudioError(f"{where}: float WAV holds NaN or infinite samples; expected "
                             "finite values in [-1, 1]")
    encoding = {"u1": "8-bit PCM", "alaw": "8-bit A-law", "mulaw": "8-bit mu-law"}.get(
        kind, f"{bits}-bit {'float' if tag == 3 else 'PCM'}")
    frames = samples.reshape(-1, channels)
    return frames, WavInfo(int(rate), int(channels), encoding, len(frames))


def wav16_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono float samples (clipped to [-1, 1]) as a 16-bit PCM WAV file."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16,
                         1, 1, int(sample_rate), 2 * int(sample_rate), 2, 16, b"data",
                         len(pcm))
    return header + pcm


def encode_wav(samples: np.ndarray, sample_rate: int, encoding: str = "pcm16") -> bytes:
    """Samples [frames] or [frames, channels] in [-1, 1] as a WAV file of ``encoding``:
    pcm8, pcm16, pcm24, pcm32, float32, float64, alaw or mulaw (the last two by nearest
    code; for test data and conversions)."""
    x = np.asarray(samples, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    channels = x.shape[1]
    clipped = np.clip(x, -1.0, 1.0).reshape(-1)
    tag, bits = 1, 16
    if encoding == "pcm8":
        body, bits = np.clip(np.round(clipped * 128 + 128), 0, 255).astype(np.uint8).tobytes(), 8
    elif encoding == "pcm16":
        body = np.clip(np.round(clipped * 32768), -32768, 32767).astype("<i2").tobytes()
    elif encoding == "pcm24":
        v = np.clip(np.round(clipped * (1 << 23)), -(1 << 23), (1 << 23) - 1).astype(np.int32)
        body = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], -1).astype(
            np.uint8).tobytes()
        bits = 24
    elif encoding == "pcm32":
        body = np.clip(np.round(clipped * 2.0 ** 31), -2 ** 31, 2 ** 31 - 1).astype(
            "<i4").tobytes()
        bits = 32
    elif encoding in ("float32", "float64"):
        tag, bits = 3, int(encoding[5:])
        body = x.reshape(-1).astype("<f4" if bits == 32 else "<f8").tobytes()
    elif encoding in ("alaw", "mulaw"):
        table = _ALAW if encoding == "alaw" else _MULAW
        order = np.argsort(table)
        pos = np.clip(np.searchsorted(table[order], clipped), 1, 255)
        nearer = np.where(np.abs(table[order][pos - 1] - clipped)
                          <= np.abs(table[order][pos] - clipped), pos - 1, pos)
        body, tag, bits = order[nearer].astype(np.uint8).tobytes(), (
            6 if encoding == "alaw" else 7), 8
    else:
        raise ValueError(f"encoding: expected pcm8, pcm16, pcm24, pcm32, float32, float64, "
                         f"alaw or mulaw, got {encoding!r}")
    align = channels * bits // 8
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(body), b"WAVE", b"fmt ", 16,
                         tag, channels, int(sample_rate), int(sample_rate) * align, align,
                         bits, b"data", len(body))
    return header + body + (b"\0" if len(body) & 1 else b"")


# -- resampling -----------------------------------------------------------------------------


def resampler_taps(in_rate: int, out_rate: int) -> tuple[float, int]:
    """(cutoff in cycles per input sample x 2, half-width K in input samples) of the
    windowed-sinc filter from ``in_rate`` to ``out_rate``."""
    cutoff = CUTOFF * min(1.0, out_rate / in_rate)
    return cutoff, int(math.ceil(ZERO_CROSSINGS / cutoff))


def resampled_length(n: int, in_rate: int, out_rate: int) -> int:
    """Samples of a clip of ``n`` samples after resampling (rounded up)."""
    return (n * out_rate + in_rate - 1) // in_rate


def resample(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """A mono float clip at ``in_rate`` resampled to ``out_rate`` (float32).

    Output sample j sits at input position t = j * in_rate / out_rate (computed exactly in
    integers); it is sum_i x[i] h(t - i) over the 2K input samples around t, with h(d) =
    c sinc(c d) kaiser(d / K), c the cutoff (``resampler_taps``): band-limited to 0.95 of the
    lower Nyquist frequency, unity gain at DC.
    """
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if in_rate == out_rate:
        return x.copy()
    cutoff, half = resampler_taps(in_rate, out_rate)
    n_out = resampled_length(len(x), in_rate, out_rate)
    offsets = np.arange(-half + 1, half + 1, dtype=np.int64)
    padded = np.concatenate([np.zeros(half, np.float32), x, np.zeros(half + 1, np.float32)])
    out = np.empty(n_out, np.float32)
    for start in range(0, n_out, _CHUNK):
        j = np.arange(start, min(n_out, start + _CHUNK), dtype=np.int64)
        base, rest = np.divmod(j * in_rate, out_rate)
        frac = rest.astype(np.float64) / out_rate
        d = frac[:, None] - offsets[None, :]  # t - i for the taps i = base + offset
        w = cutoff * np.sinc(cutoff * d) * np.i0(
            KAISER_BETA * np.sqrt(np.clip(1.0 - (d / half) ** 2, 0.0, None))) / np.i0(
            KAISER_BETA)
        taps = padded[base[:, None] + offsets[None, :] + half]
        out[start:start + len(j)] = np.sum(w * taps, axis=1)
    return out


def check_rate(rate: int, where: str) -> None:
    """Raises AudioError naming ``where`` unless the resampler takes ``rate``."""
    if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        raise AudioError(f"{where}: sample rate {rate} Hz cannot be resampled; expected "
                         f"{MIN_SAMPLE_RATE_HZ} .. {MAX_SAMPLE_RATE_HZ} Hz")


def to_clip(data: bytes, sample_rate: int | None, where: str, *,
            min_peak_dbfs: float = -60.0, min_ms: float = 0.0) -> tuple[np.ndarray, WavInfo]:
    """WAV bytes -> a mono float32 clip at ``sample_rate`` (None: the file's own rate;
    channels averaged, resampled), and the header's facts. Raises AudioError for an empty or
    silent clip (peak below ``min_peak_dbfs``), a clip shorter than ``min_ms`` or a rate the
    resampler does not take.
    """
    frames, info = read_wav(data, where)
    if info.frames == 0:
        raise AudioError(f"{where}: empty clip (0 samples); expected audio")
    check_rate(info.sample_rate, where)
    mono = frames.mean(axis=1) if info.channels > 1 else frames[:, 0]
    duration_ms = 1000.0 * info.frames / info.sample_rate
    if duration_ms < min_ms:
        raise AudioError(f"{where}: a clip of {duration_ms:.0f} ms; expected at least "
                         f"{min_ms:.0f} ms of audio")
    peak = float(np.max(np.abs(mono)))
    if peak <= 10.0 ** (min_peak_dbfs / 20.0):
        level = "digital silence" if peak == 0 else f"peak {20 * math.log10(peak):.0f} dBFS"
        raise AudioError(f"{where}: silent clip ({level}); expected audio peaking above "
                         f"{min_peak_dbfs:.0f} dBFS")
    return resample(mono, info.sample_rate, sample_rate or info.sample_rate), info


def file_to_wav16(path: str, sample_rate: int | None = None, **checks) -> bytes:
    """A WAV file as 16-bit PCM mono WAV bytes, at ``sample_rate`` (None: its own rate);
    AudioError naming the file when it cannot be used (see ``to_clip``)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AudioError(f"{path}: cannot read the file ({e}); expected a WAV file") from e
    clip, info = to_clip(data, sample_rate, path, **checks)
    return wav16_bytes(clip, sample_rate or info.sample_rate)
