"""``speech``: keyword spotting and spoken digit strings from WAV files.

Only argparse and the app's declaration are imported at start-up, so ``--help`` answers at
once; TensorFlow and TFX load when a command needs them.
"""

from __future__ import annotations

import sys

from apps.base import cli
from apps.speech.app import APP

DESCRIPTION = """\
Voice commands for hands-free operation: trains a keyword-spotting model (which word was
said) or a digit-string transcriber (which digits, in order) from labelled WAV clips,
checks it on speakers or recordings it never trained on, and deploys it for TF Serving
(WAV bytes in) and as TFLite files for edge devices (log-mel spectrogram in: the device
computes it with its audio front end, as the edge report's front_end entry describes).

Data (--format):
  fsdd             Free Spoken Digit Dataset: a flat folder of {label}_{speaker}_{index}.wav;
                   eval by recording index (--eval-indices, default 0-4) or one speaker held
                   out (--holdout-speaker)
  speech-commands  <word>/<speaker>_nohash_<n>.wav; testing_list.txt / validation_list.txt
                   honoured; _background_noise_/ mixed into training clips (--subset when the
                   folder is a sample of the data set its lists describe)
  folders          any folder of class folders of WAV clips; split by speaker (from the file
                   name) hash
Clips may be 8/16/24/32-bit integer, float, A-law or mu-law WAV at 8 .. 48 kHz, any number of
channels: they are mixed to mono, resampled to the preset's rate, and padded or cropped to
its length. Models (--model): dscnn (default for keywords), kwt, crnn (default for
--mode transcribe, trained with CTC on strings of 3-8 digits built from single-digit clips).
"""

EXAMPLES = """\
examples:
  speech run                                             # demo: generated clips, tiny preset
  speech run --data fsdd/recordings --format fsdd --preset default --eval-indices 5-9
  speech run --data fsdd/recordings --preset default --holdout-speaker theo --model kwt
  speech run --data speech_commands_v0.01 --format speech-commands --keywords yes,no,up,down
  speech run --data fsdd/recordings --mode transcribe --preset default --eval-indices 5-9
  speech predict --model workspace/serving/models/speech clip1.wav clip2.wav
  speech predict --server localhost:8500 clip1.wav
  speech transcribe --model workspace/serving/models/speech_transcribe call.wav
  speech generate --out clips --format speech-commands
  speech compile --target kubeflow-v2 --image gcr.io/acme/suite:1 --out pipeline.json
"""


def _load(files, sample_rate: int | None):
    """(readable files, their 16-bit WAV bytes, (file, reason) of the unreadable ones)."""
    from apps.speech import wav

    return cli.read_each(files, lambda path: wav.file_to_wav16(path, sample_rate))


def _served(args, mode: str):
    """The pushed model of ``--model`` and its config; it must be of ``mode``."""
    import apps.speech.model  # noqa: F401  (registers the log-mel layer for loading)
    from apps.speech.config import SpeechConfig
    from serving.served import ServedModel

    served = ServedModel(args.model, app=APP.name)
    config = served.config(SpeechConfig)
    if config.mode != mode:
        other = "transcribe" if mode == "keywords" else "predict"
        raise cli.ArgumentError(f"--model {served.model_dir}: a {config.mode} model; use "
                                f"`speech {other}` with it")
    return served, config


def _answer(args, mode: str, remote, local):
    """Reads the WAV files and answers the readable ones: through the server with
    ``remote(SpeechClient, clips)``, or with the pushed model of ``mode`` with
    ``local(config, served outputs)``; says where the answers come from. Returns (readable
    files, the answers or None when no file was readable, (file, reason) of the others)."""
    cli.check_model_or_server(args)
    from suite.quiet import quiet

    quiet()
    if args.server:
        from apps.speech.client import SpeechClient

        files, clips, bad = _load(args.files, None)
        if not clips:
            return files, None, bad
        with cli.server_errors(args):
            answers = remote(SpeechClient(args.server, model=args.model_name), clips)
        print(f"server: {args.server} (model {args.model_name})")
        return files, answers, bad
    from apps.speech.data import serving_example

    served, config = _served(args, mode)
    files, clips, bad = _load(args.files, config.data.sample_rate_hz)
    if not clips:
        return files, None, bad
    answers = local(config, served.predict([serving_example(c) for c in clips]))
    print(f"model: {served.model_dir}")
    return files, answers, bad


def cmd_predict(args) -> int:
    """Says which keyword each WAV clip holds, with a pushed model (a version folder or the
    model base path) or through a model server (--server HOST:PORT). Every readable file is
    answered; unreadable ones are listed and the exit status is 2."""
    def remote(client, clips):
        result = client.predict(clips)
        return (result.labels, result.probabilities,
                dict(zip(result.class_ids.tolist(), result.labels, strict=True)))

    def local(config, outputs):
        names = dict(enumerate(config.data.classes))
        probabilities = outputs["probabilities"]
        return [names[int(i)] for i in probabilities.argmax(axis=1)], probabilities, names

    files, answers, bad = _answer(args, "keywords", remote, local)
    labels, probabilities, names = answers or ([], [], {})
    for path, label, p in zip(files, labels, probabilities, strict=True):
        print(f"{path}: {label}  (probability {p.max():.3f})")
        if args.verbose:
            for i in p.argsort()[::-1][:3]:
                print(f"    {names.get(int(i), f'class {i}'):<12} {p[i]:.3f}")
    return cli.report_unreadable(bad)


def cmd_transcribe(args) -> int:
    """Recognises the string of spoken digits in each WAV recording with a pushed
    transcriber (``speech run --mode transcribe``), or through a model server. Every
    readable file is answered; unreadable ones are listed and the exit status is 2."""
    def remote(client, clips):
        result = client.transcribe(clips)
        return result.digits, result.scores

    def local(config, outputs):
        return [d.decode() for d in outputs["digits"]], outputs["score"]

    files, answers, bad = _answer(args, "transcribe", remote, local)
    digits, scores = answers or ([], [])
    for path, text, score in zip(files, digits, scores, strict=True):
        print(f"{path}: {text or '(no digits)'}  (score {score:.3f})")
    return cli.report_unreadable(bad)


def commands(sub) -> None:
    """The app-only commands."""
    predict = sub.add_parser("predict", help="say which keyword WAV clips hold",
                             description=cmd_predict.__doc__)
    cli.add_serving_arguments(predict, APP)
    predict.add_argument("files", nargs="+", metavar="WAV", help="WAV clips")
    predict.add_argument("-v", "--verbose", action="store_true", help="show the top 3 classes")
    predict.set_defaults(func=cmd_predict)

    transcribe = sub.add_parser("transcribe", help="recognise spoken digit strings in WAV "
                                                   "recordings",
                                description=cmd_transcribe.__doc__)
    cli.add_serving_arguments(transcribe, APP)
    transcribe.set_defaults(model_name="speech_transcribe")
    transcribe.add_argument("files", nargs="+", metavar="WAV", help="WAV recordings")
    transcribe.set_defaults(func=cmd_transcribe)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``speech``."""
    return cli.main(APP, argv, DESCRIPTION, EXAMPLES, commands)


if __name__ == "__main__":
    sys.exit(main())
