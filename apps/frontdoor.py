"""``suite``: the suite's front door (lists the apps, serves the pushed models, checks their
serving traffic for drift, shows the training runs in TensorBoard, and runs an app's
commands as ``suite APP ...``)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from apps import registry
from apps.base import tensorboard
from serving import drift as drift_cli
from serving import serve as serve_cli


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``suite``."""
    argv = sys.argv[1:] if argv is None else argv
    commands = registry.commands()
    parser = argparse.ArgumentParser(
        prog="suite",
        description="Industrial deep-learning suite: each app takes raw domain data to a "
                    "blessed model served by TF Serving and exported to TFLite.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("apps", help="list the apps and their commands")
    demo = sub.add_parser("demo", help="run every app (or --app NAME) on generated demo data "
                                       "with the tiny preset and print one table")
    demo.add_argument("--app", action="append", choices=sorted(commands), metavar="APP",
                      help=f"only this app (repeatable): {', '.join(commands)}")
    demo.add_argument("--workspace", default="workspace", metavar="DIR")
    serve = sub.add_parser(
        "serve", help="serve the pushed models over gRPC and REST (TF Serving API)",
        description=serve_cli.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve_cli.add_arguments(serve)
    drift = sub.add_parser(
        "drift", help="compare a log of serving requests with a model's training data (TFDV)",
        description=drift_cli.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    drift_cli.add_arguments(drift)
    board = sub.add_parser("tensorboard", help="TensorBoard over every training run of a "
                                               "workspace", description=tensorboard.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    tensorboard.add_arguments(board)
    for command, name in commands.items():
        sub.add_parser(command, help=registry.load(name).about, add_help=False)
    if argv and argv[0] in commands:
        module = importlib.import_module(f"apps.{commands[argv[0]]}.cli")
        return module.main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve_cli.run(args)
    if args.command == "drift":
        return drift_cli.run(args)
    if args.command == "tensorboard":
        return tensorboard.run(args)
    if args.command == "demo":
        from apps.base.demo import run_demo

        return run_demo(os.path.abspath(args.workspace),
                        [commands[a] for a in args.app] if args.app else None)
    width = max(len(c) for c in commands)
    for command, name in commands.items():
        print(f"{command:<{width}}  {registry.load(name).about}")
    print("\nRun `suite APP --help` (or `APP --help`) for an app's commands.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
