"""``sensor-vibration``: bearing fault detection from accelerometer recordings.

Only argparse and the app's declaration are imported at start-up, so ``--help`` answers at
once; TensorFlow and TFX load when a command needs them.
"""

from __future__ import annotations

import os
import sys

from apps.base import cli
from apps.sensor_vibration.app import APP

DESCRIPTION = """\
Predictive maintenance from vibration: classifies bearing condition (normal, or ball /
inner-race / outer-race fault and its size) from accelerometer recordings, and deploys the
model for TF Serving and as TFLite files for edge gateways.

Data: a folder with recordings and a manifest.csv naming, for each file, its condition
label (column class10: Normal, B007 ... OR021), motor load (load_hp) and speed (rpm).
Recordings are CWRU-style MATLAB files (X<nnn>_DE_time, X<nnn>_FE_time keys) or CSV files
with one column per accelerometer (DE, FE, ...). Recordings are cut into windows; each
recording's last time block is kept for evaluation, so no stretch of signal is both trained
and tested on.
"""

EXAMPLES = """\
examples:
  sensor-vibration run                                  # demo: generated data, tiny preset
  sensor-vibration run --data /data/cwru --preset default
  sensor-vibration run --data /data/cwru --preset default --holdout-load 2 --model gru
  sensor-vibration predict --model workspace/serving/models/sensor_vibration pump7.mat
  sensor-vibration predict --server localhost:8500 pump7.mat
  sensor-vibration compile --target kubeflow-v2 --image gcr.io/acme/suite:1 --out pipeline.json
"""


def _read_signals(paths, channels):
    from apps.sensor_vibration import data

    return [(data.read_csv_signal(path, channels) if path.endswith(".csv")
             else data.read_mat_signal(path, channels)) for path in paths]


def cmd_predict(args) -> int:
    """Classifies recordings with a pushed model (a version folder or the model base path),
    or through a model server (--server HOST:PORT) without loading the model here. Each
    recording is cut into consecutive windows; the majority class is printed."""
    cli.check_model_or_server(args)
    missing = [path for path in args.files if not os.path.isfile(path)]
    if missing:  # before a model loads (seconds) or a server is asked
        raise FileNotFoundError(f"{missing[0]}: no such file; expected a MATLAB .mat file or "
                                "a CSV recording")
    from suite.quiet import quiet

    quiet()
    import numpy as np

    from apps.sensor_vibration import data

    if args.server:
        from apps.sensor_vibration.client import VibrationClient

        client = VibrationClient(args.server, model=args.model_name)
        channels = tuple(args.channels.split(","))
        signals = _read_signals(args.files, channels)
        with cli.server_errors(args):
            window, rest = divmod(client.window_values, len(channels))
        if rest:
            raise ValueError(f"--channels {args.channels}: the served model takes windows of "
                             f"{client.window_values} values, not a multiple of "
                             f"{len(channels)} channels")
        names: dict[int, str] = {}

        def classify(signal):
            windows = np.stack(data.signal_windows(signal, window))
            with cli.server_errors(args):
                result = client.predict(windows)
            names.update(zip(result.class_ids.tolist(), result.labels, strict=True))
            return result.probabilities

        print(f"server: {args.server} (model {args.model_name})")
    else:
        from apps.sensor_vibration.config import VibrationConfig
        from serving.served import ServedModel

        served = ServedModel(args.model, app=APP.name)
        config = served.config(VibrationConfig)
        signals = _read_signals(args.files, config.data.channels)
        names = dict(enumerate(config.data.classes))

        def classify(signal):
            examples = data.signal_examples(signal, config.data)
            return served.predict(examples)["probabilities"]

        print(f"model: {served.model_dir}")
    for path, signal in zip(args.files, signals, strict=True):
        probabilities = classify(signal)
        votes = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
        mean = probabilities.mean(axis=0)
        best = int(votes.argmax())
        print(f"{path}: {names.get(best, f'class {best}')}  ({votes[best]}/{len(probabilities)} "
              f"windows, mean probability {mean[best]:.3f})")
        if args.verbose:
            for i in np.argsort(-mean)[:3]:
                print(f"    {names.get(int(i), f'class {i}'):<8} {mean[i]:.3f}")
    return 0


def commands(sub) -> None:
    """The app-only commands."""
    predict = sub.add_parser("predict", help="classify recordings with a deployed model",
                             description=cmd_predict.__doc__)
    cli.add_serving_arguments(predict, APP)
    predict.add_argument("--channels", default="DE",
                         help="channels to read, comma separated, with --server (default: DE)")
    predict.add_argument("files", nargs="+", metavar="FILE", help=".mat or .csv recordings")
    predict.add_argument("-v", "--verbose", action="store_true", help="show the top 3 classes")
    predict.set_defaults(func=cmd_predict)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sensor-vibration``."""
    return cli.main(APP, argv, DESCRIPTION, EXAMPLES, commands)


if __name__ == "__main__":
    sys.exit(main())
