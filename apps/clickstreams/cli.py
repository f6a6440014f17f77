"""``clickstreams``: next-item recommendation from session and interaction logs.

Only argparse and the app's declaration are imported at start-up, so ``--help`` answers at
once; TensorFlow and TFX load when a command needs them.
"""

from __future__ import annotations

import os
import sys

from apps.base import cli
from apps.clickstreams.app import APP
from apps.clickstreams.features import VOCABULARY

DESCRIPTION = """\
Next-item recommendation: learns from session click logs or user interaction histories
which item a user will look at next, and deploys a model that returns the top-k item ids
for a history, for TF Serving and as TFLite files for the edge.

Data: one event log file. session-tsv: SessionId<TAB>ItemId<TAB>Time (unix seconds);
diginetica: sessionId;userId;itemId;timeframe;eventdate; movielens: user item rating
timestamp (u.data); csv: a header naming session, item and time columns (--columns). Events
are ordered per session (or user) by time; the newest events are kept for evaluation (never
a random split). The model must beat the best of four baselines computed on the same split
(most popular items; items that followed the last item; session kNN; the history's own
items) on MRR@20 to be deployed.
"""

EXAMPLES = """\
examples:
  clickstreams run                                      # demo: generated log, tiny preset
  clickstreams run --data yoochoose.tsv --format session-tsv --preset default
  clickstreams run --data train-item-views.csv --format diginetica --preset default
  clickstreams run --data u.data --format movielens --model gru
  clickstreams run --data events.csv --format csv --columns session,product,time,event
  clickstreams recommend --model workspace/serving/models/clickstreams --history 214 87 -k 10
  clickstreams compile --target kubeflow-v2 --image gcr.io/acme/suite:1 --out pipeline.json
"""


def cmd_recommend(args) -> int:
    """Recommends the next items for a history with a pushed model (a version folder or
    the model base path)."""
    from suite.quiet import quiet

    quiet()
    from apps.clickstreams import data
    from serving.served import ServedModel

    served = ServedModel(args.model, app=APP.name)
    outputs = served.predict(data.history_examples([args.history]))
    items = [i.decode() for i in outputs["items"][0]]
    scores = outputs["scores"][0].tolist()
    if args.k > len(items):
        raise ValueError(f"-k {args.k}: the model at {served.model_dir} returns at most "
                         f"{len(items)} items")
    print(f"model: {served.model_dir}")
    print(f"history: {' '.join(args.history) or '(empty: the most popular items)'}")
    vocabulary_file = os.path.join(served.model_dir, "assets", VOCABULARY)
    if os.path.exists(vocabulary_file):
        with open(vocabulary_file) as f:
            known = {line.rstrip("\n") for line in f}
        unknown = [item for item in args.history if item not in known]
        if unknown:
            print(f"note: {len(unknown)} item(s) of the history are not in the model's "
                  f"vocabulary of {len(known)} items: {' '.join(unknown)} (they count as an "
                  "unknown item)")
    for rank, (item, score) in enumerate(zip(items[:args.k], scores, strict=False), start=1):
        print(f"{rank:>3}. {item:<24} {score:.4f}")
    return 0


def commands(sub) -> None:
    """The app-only commands."""
    rec = sub.add_parser("recommend", help="top-k next items for a history",
                         description=cmd_recommend.__doc__)
    cli.add_serving_arguments(rec, APP, required_model=True)
    rec.add_argument("--history", nargs="*", default=[], metavar="ITEM",
                     help="item ids, oldest first (none: the most popular items)")
    rec.add_argument("-k", type=cli.positive_int, default=20,
                     help="how many items (default: 20)")
    rec.set_defaults(func=cmd_recommend)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``clickstreams``."""
    return cli.main(APP, argv, DESCRIPTION, EXAMPLES, commands)


if __name__ == "__main__":
    sys.exit(main())
