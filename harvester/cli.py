"""The `harvest` command line: parse, configure, set up logging, run, map outcomes to exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

from harvester import __version__
from harvester.config import RunConfig, ShardSpec
from harvester.exceptions import HarvestError
from harvester.exit_codes import (
    EXIT_BAD_KEY,
    EXIT_DISK_FULL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    exit_code_for,
)

log = logging.getLogger("harvester")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the usage text is what `--help` is for."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _shard(text: str) -> ShardSpec:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 1/4, got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"shard {text!r}: need 1 <= K <= N")
    return ShardSpec(index=k - 1, count=n)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="harvest the photos matching a queries file")
    p.add_argument("queries", type=Path, help="queries file (Berg/Hays format, see README)")
    p.add_argument("--out", type=Path, default=Path("out"), help="output directory (default: out)")
    p.add_argument("--emulator", action="store_true", help="start the bundled Flickr emulator")
    p.add_argument(
        "--emulator-photos",
        type=_positive_int,
        default=10_000,
        metavar="N",
        help="photos in the bundled emulator's corpus",
    )
    p.add_argument(
        "--emulator-profile",
        default="realistic",
        choices=_PROFILES,
        help="emulator realism profile",
    )
    p.add_argument("--emulator-seed", type=int, default=0, help="emulator corpus seed")
    p.add_argument("--flickr-url", default=_run_default("flickr_url"), help="REST endpoint")
    p.add_argument("--metadata-only", action="store_true", help="search and record, no images")
    p.add_argument("--retry-failed", action="store_true", help="retry photos that failed")
    p.add_argument(
        "--workers", type=_positive_int, default=_run_default("workers"), help="worker processes"
    )
    p.add_argument(
        "--shard",
        type=_shard,
        default=_run_default("shard"),
        metavar="K/N",
        help="run only shard K of N of the keywords",
    )
    p.add_argument(
        "--calls-per-hour",
        type=_positive_float,
        default=_run_default("calls_per_hour"),
        help="API budget per key",
    )
    p.add_argument(
        "--window-target",
        type=_positive_int,
        default=_run_default("window_target"),
        metavar="N",
        help="photos a new window aims for",
    )
    p.add_argument(
        "--date-field",
        choices=("upload", "taken"),
        default=_run_default("date_field"),
        help="date the windows cut on",
    )
    p.add_argument("--send-negatives", action="store_true", help="also send -terms to Flickr")
    p.add_argument(
        "--size",
        choices=("large", "large2048", "original"),
        default=_run_default("size"),
        help="preferred size",
    )
    p.add_argument(
        "--max-side", type=_positive_int, default=_run_default("max_side"), help="downscale to (px)"
    )
    p.add_argument(
        "--min-side", type=int, default=_run_default("min_side"), help="skip images smaller (px)"
    )
    p.add_argument("--allow-smaller", action="store_true", help="fall back to smaller sizes")
    p.add_argument("--no-frame-strip", action="store_true", help="keep uniform borders")
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=_run_default("concurrency"),
        help="downloads in flight",
    )
    p.add_argument(
        "--threads", type=_positive_int, default=_run_default("threads"), help="image threads"
    )
    p.add_argument(
        "--image-rate",
        type=_positive_float,
        default=_run_default("image_rate_per_s"),
        help="image requests per second",
    )
    p.add_argument("--no-fsync", action="store_true", help="skip fsync (faster, less durable)")
    p.add_argument("--plain", action="store_true", help="log lines instead of live progress")
    p.set_defaults(handler=_cmd_run)


def _run_default(name: str) -> Any:
    """RunConfig's default for a field: the command line keeps no defaults of its own."""
    spec = next(f for f in dataclasses.fields(RunConfig) if f.name == name)
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


_PROFILES = ("ideal", "realistic", "hostile")


def _add_emulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("emulate", help="serve the local Flickr emulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8410)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--photos", type=_positive_int, default=10_000)
    p.add_argument("--profile", choices=_PROFILES, default="realistic")
    p.add_argument("--time-scale", type=float, default=1.0, help="speed up the rate limit clock")
    p.add_argument("--invalid-keys", default="", help="comma-separated keys to reject")
    p.add_argument("--image-cache", default=None, metavar="DIR", help="cache rendered images")
    p.add_argument("--image-pool", type=int, default=0, help="load tests: reuse N images")
    p.add_argument("--image-scale", type=float, default=1.0, help="load tests: shrink images")
    p.add_argument("--public-url", default=None, help="base URL image links use (containers)")
    p.set_defaults(handler=_cmd_emulate)


def _add_store_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="show a harvest's progress from its store")
    p.add_argument("out", type=Path)
    p.set_defaults(handler=_cmd_status)
    p = sub.add_parser("export", help="write the photo records as JSONL or CSV")
    p.add_argument("out", type=Path)
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("--output", type=Path, default=None, help="file (default: stdout)")
    p.set_defaults(handler=_cmd_export)
    p = sub.add_parser("merge", help="join shard outputs into one, duplicates removed")
    p.add_argument("sources", type=Path, nargs="+")
    p.add_argument("--into", type=Path, required=True)
    p.set_defaults(handler=_cmd_merge)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = _Parser(prog="harvest", description=__doc__)
    parser.add_argument("--version", action="version", version=f"harvest {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    # Subcommand parsers are _Parsers too (argparse uses the parent's class).
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True),
    )
    _add_run(sub)
    _add_emulate(sub)
    _add_store_commands(sub)
    return parser


def run_config(args: argparse.Namespace) -> RunConfig:
    """Build the run configuration from parsed arguments."""
    return RunConfig(
        queries_path=args.queries,
        out_dir=args.out,
        flickr_url=args.flickr_url,
        calls_per_hour=args.calls_per_hour,
        window_target=args.window_target,
        date_field=args.date_field,
        send_negatives=args.send_negatives,
        metadata_only=args.metadata_only,
        retry_failed=args.retry_failed,
        size=args.size,
        max_side=args.max_side,
        min_side=args.min_side,
        allow_smaller=args.allow_smaller,
        strip_frames=not args.no_frame_strip,
        concurrency=args.concurrency,
        threads=args.threads,
        image_rate_per_s=args.image_rate,
        fsync=not args.no_fsync,
        workers=args.workers,
        shard=args.shard,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from harvester.runner import run_command

    return run_command(run_config(args), args)


def _cmd_emulate(args: argparse.Namespace) -> int:
    from harvester.emulator import EmulatorConfig, serve_forever

    keys = frozenset(k for k in args.invalid_keys.split(",") if k)
    serve_forever(
        EmulatorConfig(
            host=args.host,
            port=args.port,
            seed=args.seed,
            photos=args.photos,
            profile=args.profile,
            time_scale=args.time_scale,
            invalid_keys=keys,
            image_cache_dir=args.image_cache,
            public_url=args.public_url,
            image_pool=args.image_pool,
            image_scale=args.image_scale,
        )
    )
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from harvester.runner import status_command

    return status_command(args.out)


def _cmd_export(args: argparse.Namespace) -> int:
    from harvester.runner import export_command

    return export_command(args.out, args.format, args.output)


def _cmd_merge(args: argparse.Namespace) -> int:
    from harvester.merge import merge_outputs

    merged = merge_outputs(list(args.sources), args.into)
    log.info("merged %d photos into %s", merged, args.into)
    return EXIT_OK


def _setup_logging(args: argparse.Namespace) -> None:
    from harvester.progress import setup_logging, stderr_console

    # On a terminal, log lines go through the console the live view draws on, so they scroll
    # above it; `--plain` and pipes get plain lines.
    rich = sys.stderr.isatty() and not getattr(args, "plain", False)
    setup_logging(args.verbose, console=stderr_console() if rich else None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `harvest` console script."""
    args = build_parser().parse_args(argv)
    _setup_logging(args)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except HarvestError as exc:
        code = exit_code_for(exc)
        print(f"harvest: {exc}{_HINTS.get(code, '')}", file=sys.stderr)
        return code
    except OSError as exc:  # a file named on the command line (export --output, merge --into)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"harvest: {where}{exc.strerror or exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("harvest: interrupted; run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED


#: What to do next, for the errors whose message alone does not say.
_HINTS = {
    EXIT_BAD_KEY: "; check FLICKR_API_KEY or api_key in the config file",
    EXIT_DISK_FULL: "; everything written so far is kept: free space and run the same command",
}


if __name__ == "__main__":
    sys.exit(main())
