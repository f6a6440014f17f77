"""The speech models' client: WAV clips in, keyword labels and probabilities or digit strings
and scores out, over gRPC or REST, from a TF Serving endpoint (tensorflow_model_server or
the suite's server).

Clips go to ``serving_default`` as serialized tf.Examples holding 16-bit PCM mono WAV bytes
(the served graph decodes those, resamples them to the model's rate and fits their length).
Files in any encoding the app's reader takes (8/24/32-bit integer, float, A-law, mu-law,
several channels) are converted here exactly as ingestion converts them, keeping their
sample rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from apps.speech import wav
from serving.clients import DEFAULT_GRPC_TARGET, AppClient, GrpcClient, RestClient


@dataclass(frozen=True)
class KeywordPrediction:
    """Per clip: the predicted class name, its id and probability, and every class
    probability."""

    labels: list[str]
    class_ids: np.ndarray  # int64 [n]
    scores: np.ndarray  # float32 [n]: probability of the predicted class
    probabilities: np.ndarray  # float32 [n, n_classes]
    version: int | None  # the model version that answered (gRPC only)


@dataclass(frozen=True)
class Transcription:
    """Per recording: the decoded digit string and its score (the probability of the
    decoded labelling; see apps.speech.ctc.decode)."""

    digits: list[str]
    scores: np.ndarray  # float32 [n]
    version: int | None


def wav_bytes(clip: bytes | str, where: str = "clip") -> bytes:
    """A WAV file (path or bytes) as 16-bit PCM mono WAV bytes at its own rate; AudioError
    naming the file when the reader cannot use it (not WAV, truncated, silent, ...)."""
    if isinstance(clip, str):
        return wav.file_to_wav16(clip)
    samples, info = wav.to_clip(bytes(clip), None, where)
    return wav.wav16_bytes(samples, info.sample_rate)


def samples_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Float PCM samples [n] (mono, in [-1, 1]) as 16-bit WAV bytes to send."""
    wav.check_rate(sample_rate, "samples")
    return wav.wav16_bytes(np.asarray(samples, np.float32), sample_rate)


class SpeechClient(AppClient):
    """Keyword spotting (``predict``) or digit strings (``transcribe``) with a served speech
    model, at most ``max_clips_per_request`` clips per call (keep it <= the server's
    max_batch_size when batching is on)."""

    def __init__(self, target: str = DEFAULT_GRPC_TARGET, *, model: str = "speech",
                 max_clips_per_request: int = 16,
                 client: GrpcClient | RestClient | None = None, **client_options):
        super().__init__(target, model=model, client=client, **client_options)
        self.max_clips_per_request = max_clips_per_request

    def _examples(self, clips: Sequence[bytes | str]) -> list[dict]:
        if not clips:
            raise ValueError("expected at least one clip")
        return [{"audio": wav_bytes(c, f"clip {i}")} for i, c in enumerate(clips)]

    def predict(self, clips: Sequence[bytes | str]) -> KeywordPrediction:
        """Classifies WAV clips (file paths or WAV bytes) with a keyword model."""
        try:
            labels, arrays, version = self.classify_examples(
                self._examples(clips), self.max_clips_per_request,
                {"class_ids": np.int64, "scores": np.float32, "probabilities": np.float32})
        except KeyError as e:
            raise ValueError(f"model {self.model}: expected a keyword model (outputs classes, "
                             f"class_ids, scores, probabilities), got no {e} output; a "
                             "transcriber answers transcribe()") from None
        return KeywordPrediction(labels, arrays["class_ids"], arrays["scores"],
                                 arrays["probabilities"], version)

    def transcribe(self, recordings: Sequence[bytes | str]) -> Transcription:
        """The digit strings of WAV recordings (file paths or WAV bytes) with a transcriber
        (model name ``speech_transcribe`` by default of the app's run)."""
        examples = self._examples(recordings)
        digits: list[str] = []
        scores, version = [], None
        for start in range(0, len(examples), self.max_clips_per_request):
            result = self.serving_default(examples[start:start + self.max_clips_per_request])
            if "digits" not in result.outputs:
                raise ValueError(f"model {self.model}: expected a transcriber (a 'digits' "
                                 f"output), got outputs {sorted(result.outputs)}")
            digits += [d.decode() if isinstance(d, bytes) else str(d)
                       for d in result.outputs["digits"]]
            scores.append(np.asarray(result.outputs["score"], np.float32))
            version = result.version
        return Transcription(digits, np.concatenate(scores), version)
