"""`python3 -m trainsmart_client wrap [options] -- COMMAND ARGS...` (or `python3 trainsmart-client.pyz wrap ...`).

The command line is what the operator writes into a pod whose TrainingJob declares where its metrics
appear; a person can use it the same way on a laptop (no report URL: the command just runs).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from trainsmart_client.line_parsers import DEFAULT_EPOCH_KEY, FORMATS, JSON, make_parser
from trainsmart_client.session import Session
from trainsmart_client.wrapper import DEFAULT_TENSORBOARD_POLL_S, Wrapper

USAGE_ERROR = 2


def build_argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainsmart-client",
        description="Run a training command unchanged and report the metrics it prints to the trainsmart operator.",
    )
    commands = parser.add_subparsers(dest="subcommand", metavar="wrap")
    wrap = commands.add_parser(
        "wrap",
        help="run COMMAND, pass its output through, report its metrics",
        usage="%(prog)s [options] -- COMMAND [ARGS...]",
    )
    wrap.add_argument(
        "--format",
        choices=FORMATS,
        default=JSON,
        help="how metric lines look on stdout: JSON objects, key=value pairs, or --pattern (default: json)",
    )
    wrap.add_argument("--pattern", help="regex with named groups (the metric names), for --format regex")
    wrap.add_argument("--no-stdout-metrics", action="store_true", help="do not parse stdout (TensorBoard events only)")
    wrap.add_argument("--tensorboard-dir", type=Path, help="also report scalars from TensorBoard event files here")
    wrap.add_argument(
        "--tensorboard-poll-seconds", type=float, default=DEFAULT_TENSORBOARD_POLL_S, help=argparse.SUPPRESS
    )
    wrap.add_argument(
        "--epoch-key",
        default=DEFAULT_EPOCH_KEY,
        help="the key (or TensorBoard tag; `step` = the event step) whose whole values mark completed epochs",
    )
    wrap.add_argument("--total-epochs", type=int, help="how many epochs the command runs (for progress)")
    wrap.add_argument(
        "--objective",
        default="",
        help="the metric sweeps and early stopping watch (named in every report; its per-epoch values go into "
        "the final result). Default: the operator's own default, val_loss",
    )
    wrap.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_argument_parser().parse_args(argv)
    if args.subcommand != "wrap":
        build_argument_parser().print_help(sys.stderr)
        return USAGE_ERROR
    command: list[str] = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("trainsmart-client wrap: no command given (put it after --)", file=sys.stderr)
        return USAGE_ERROR
    logging.basicConfig(level=logging.INFO, format="trainsmart-client: %(levelname)s %(message)s", stream=sys.stderr)
    try:
        parser = None if args.no_stdout_metrics else make_parser(args.format, args.pattern, args.epoch_key)
    except ValueError as error:  # re.error is a ValueError
        print(f"trainsmart-client wrap: {error}", file=sys.stderr)
        return USAGE_ERROR
    session = Session(objective_metric=args.objective)
    if args.total_epochs is not None:
        session.set_total_epochs(args.total_epochs)
    wrapper = Wrapper(
        command,
        session,
        parser,
        tensorboard_dir=args.tensorboard_dir,
        epoch_key=args.epoch_key,
        tensorboard_poll_s=args.tensorboard_poll_seconds,
    )
    return wrapper.run()
