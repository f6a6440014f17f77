"""``suite serve``: serves the model repository over gRPC and REST.

Writes models.config, batching_parameters.txt and monitoring.config next to the repository
folder, then starts ``tensorflow_model_server`` on them when it is on PATH, or else the
suite's own server (``serving.server``), which implements the same API on the same files.
With ``--log-requests FILE`` the suite's server appends a sample of the requests it answered
to FILE (serialized tf.Examples) for ``suite drift``. Only argparse is imported at
start-up, so ``suite --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

TF_SERVING_BINARY = "tensorflow_model_server"
ENGINES = ("auto", TF_SERVING_BINARY, "suite")


def _ranged(kind: type, low: float, high: float | None = None):
    """An argparse type: a ``kind`` number in [low, high]; argparse reports the option."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected {bound}, got {value}")
        return value

    return parse


PORT = _ranged(int, 0, 65535)  # 0: any free port


def _sample_rate(text: str) -> float:
    """An argparse type: a fraction in (0, 1]."""
    value = _ranged(float, 0.0, 1.0)(text)
    if value == 0.0:
        raise argparse.ArgumentTypeError("expected more than 0 (and at most 1), got 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``suite serve``."""
    from serving.repository import DEFAULT_BASE  # noqa: PLC0415 (no TensorFlow import)

    parser.add_argument("--base", default=DEFAULT_BASE, metavar="DIR",
                        help="model repository: DIR/<model>/<version>/ (default: %(default)s)")
    parser.add_argument("--model", action="append", metavar="NAME",
                        help="serve only this model (repeatable; default: every model in --base)")
    parser.add_argument("--config-dir", metavar="DIR",
                        help="where the config files go (default: the folder holding --base)")
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help=f"auto: {TF_SERVING_BINARY} if it is on PATH (and no TLS is "
                             "asked for), otherwise the suite's server")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: loopback only; the suite's server)")
    parser.add_argument("--grpc-port", type=PORT, default=8500, help="0 to 65535 (0: any free)")
    parser.add_argument("--rest-port", type=PORT, default=8501, help="0 to 65535 (0: any free)")
    parser.add_argument("--policy", default="latest", metavar="POLICY",
                        help="versions to serve: latest[:N], all, or specific:V1,V2")
    parser.add_argument("--label", action="append", default=[], metavar="[MODEL:]LABEL=VERSION",
                        help="version label, e.g. stable=1712345678 (repeatable)")
    parser.add_argument("--poll-seconds", type=_ranged(float, 0.01), default=1.0,
                        help="how often the repository is checked for new versions")
    parser.add_argument("--no-batching", action="store_true",
                        help="run every request on its own (default: server-side batching)")
    parser.add_argument("--max-batch-size", type=_ranged(int, 1), default=32)
    parser.add_argument("--batch-timeout-micros", type=_ranged(int, 0), default=2000)
    parser.add_argument("--num-batch-threads", type=_ranged(int, 1),
                        default=max(2, os.cpu_count() or 1))
    parser.add_argument("--max-enqueued-batches", type=_ranged(int, 1), default=100)
    parser.add_argument("--max-request-bytes", type=_ranged(int, 1), default=64 << 20,
                        help="larger requests are refused (suite server; default 64 MiB)")
    parser.add_argument("--tls-cert", metavar="PEM", help="serve gRPC over TLS with this cert")
    parser.add_argument("--tls-key", metavar="PEM", help="... and this private key")
    parser.add_argument("--log-requests", metavar="FILE",
                        help="append a sample of the answered requests' examples to FILE, a "
                             "TFRecord of serialized tf.Example for `suite drift --requests "
                             "FILE` (Classify/Regress inputs; Predict on serialized examples, "
                             "and on raw tensors one example per row); needs the suite's "
                             f"server, not {TF_SERVING_BINARY}")
    parser.add_argument("--log-sample-rate", type=_sample_rate, metavar="R",
                        help="fraction of requests logged, in (0, 1], drawn per request "
                             "(default with --log-requests: 1.0, every request)")


def _labels(items: list[str], models: list[str]) -> dict[str, dict[str, int]]:
    """Parses --label values into model -> label -> version."""
    labels: dict[str, dict[str, int]] = {m: {} for m in models}
    for item in items:
        target, sep, value = item.rpartition("=")
        model, _, label = target.rpartition(":")
        if not sep or not label or not value.isdigit():
            raise ValueError(f"--label {item!r}: expected [MODEL:]LABEL=VERSION")
        if not model and len(models) != 1:
            raise ValueError(f"--label {item!r}: name the model (MODEL:LABEL=VERSION) when "
                             f"serving several ({models})")
        model = model or models[0]
        if model not in labels:
            raise ValueError(f"--label {item!r}: model {model!r} is not served ({models})")
        labels[model][label] = int(value)
    return labels


def tensorflow_model_server_command(files, *, grpc_port: int, rest_port: int,
                                    poll_seconds: float, batching: bool) -> list[str]:
    """The ``tensorflow_model_server`` command line for the written config files."""
    command = [TF_SERVING_BINARY, f"--port={grpc_port}", f"--rest_api_port={rest_port}",
               f"--model_config_file={files.model_config}",
               f"--monitoring_config_file={files.monitoring}",
               f"--file_system_poll_wait_seconds={max(1, round(poll_seconds))}"]
    if batching:
        command += ["--enable_batching", f"--batching_parameters_file={files.batching_parameters}"]
    return command


def write_configs(args: argparse.Namespace):
    """Writes the three config files for the models the arguments name; returns their
    paths and the model names. ValueError/FileNotFoundError say what is wrong."""
    from serving.repository import (
        BatchingConfig, ModelEntry, VersionPolicy, discover_models, write_serving_configs)

    base = os.path.abspath(args.base)
    found = discover_models(base)
    models = args.model or found
    missing = [m for m in models if m not in found]
    if not models or missing:
        raise FileNotFoundError(
            f"no pushed model{' ' + ', '.join(missing) if missing else 's'} under {base} "
            f"(expected {base}/<model>/<version>/); run `make demo` to train and push one")
    policy = VersionPolicy.parse(args.policy)
    labels = _labels(args.label, models)
    batching = BatchingConfig(args.max_batch_size, args.batch_timeout_micros,
                              args.num_batch_threads, args.max_enqueued_batches)
    entries = [ModelEntry(m, os.path.join(base, m), policy, labels[m]) for m in models]
    return write_serving_configs(base, entries, batching, config_dir=args.config_dir), models


def suite_server(args: argparse.Namespace, files):
    """The suite's ModelServer for the arguments and the written config files (not started)."""
    from serving.server import ModelServer

    return ModelServer.from_files(
        files.model_config, None if args.no_batching else files.batching_parameters,
        files.monitoring, host=args.host, grpc_port=args.grpc_port, rest_port=args.rest_port,
        poll_seconds=args.poll_seconds, max_request_bytes=args.max_request_bytes,
        tls_cert=args.tls_cert, tls_key=args.tls_key, log_requests=args.log_requests,
        log_sample_rate=args.log_sample_rate or 1.0)


def run(args: argparse.Namespace) -> int:
    """Writes the configs and serves until interrupted."""
    if args.log_sample_rate is not None and not args.log_requests:
        print("error: --log-sample-rate needs --log-requests FILE", file=sys.stderr)
        return 2
    try:
        files, models = write_configs(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {files.model_config}, {files.batching_parameters}, {files.monitoring}")

    tls = bool(args.tls_cert or args.tls_key)
    binary = shutil.which(TF_SERVING_BINARY)
    engine = args.engine
    if engine == "auto":
        engine = TF_SERVING_BINARY if binary and not (tls or args.log_requests) else "suite"
    if engine == TF_SERVING_BINARY:
        if args.log_requests:
            print("error: request logging (--log-requests) needs the suite's server "
                  "(--engine suite)", file=sys.stderr)
            return 2
        if not binary:
            print(f"error: {TF_SERVING_BINARY} is not on PATH", file=sys.stderr)
            return 2
        if tls:
            print("error: TLS is served by the suite's server only (--engine suite)",
                  file=sys.stderr)
            return 2
        command = tensorflow_model_server_command(
            files, grpc_port=args.grpc_port, rest_port=args.rest_port,
            poll_seconds=args.poll_seconds, batching=not args.no_batching)
        print(f"starting {' '.join(command)}\n(note: {TF_SERVING_BINARY} listens on every "
              "interface; --host applies to the suite's server only)", flush=True)
        os.execv(binary, command)

    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = suite_server(args, files)
    except (ValueError, OSError) as e:  # the request log file: missing folder, not a TFRecord
        print(f"error: {e}", file=sys.stderr)
        return 2
    server.start()
    print(f"serving {', '.join(models)}: gRPC {server.grpc_target}"
          f"{' (TLS)' if tls else ''}, REST {server.rest_url} (Ctrl-C to stop)", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
