"""The `harvest` command line: parse, build the config, set up logging, run, map to exit codes.

Every `harvest run` option is one row of `RUN_OPTIONS`: its flag and the config field(s) it
sets. The parser is built from the rows and the config from the options given, so the command
line keeps no defaults of its own (a field's default is RunConfig's) and every print is here.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

import orjson

from harvester import __version__
from harvester.config import (
    FLICKR_REST_URL,
    BundledEmulator,
    OutputFormat,
    RunConfig,
    ShardSpec,
    SizePreference,
)
from harvester.exceptions import ConfigError, HarvestError, ImageError
from harvester.exit_codes import (
    EXIT_BAD_KEY,
    EXIT_DISK_FULL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    exit_code_for,
)
from harvester.images.writer import FILES_PER_DIR
from harvester.publish import EXPORT_FORMATS
from harvester.records import DateField

log = logging.getLogger("harvester")

DESCRIPTION = """\
Turn Flickr into research image datasets. `harvest run` finds every photo matching the
keywords of a queries file, downloads each once, strips frames, resizes, writes the licence
and provenance into each file, and lays them out in directories of at most 1,000 files. A run
resumes exactly where it stopped, even after kill -9: run the same command again.
"""

EPILOG = "Run `harvest COMMAND --help` for a command's options; README.md has the details."


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


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _batch_photos(text: str) -> int:
    value = _whole(text, 1)
    if value > FILES_PER_DIR:
        raise argparse.ArgumentTypeError(
            f"must be at most {FILES_PER_DIR} (one output directory), got {value}"
        )
    return value


def _count(text: str) -> int:
    return _whole(text, 0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _profiles() -> tuple[str, ...]:
    from harvester.emulator.config import PROFILES  # the emulator's own list, not a copy

    return tuple(PROFILES)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunOption:
    """One `harvest run` option and the config field(s) it sets ("section.field" or "field").

    `kind` is "value" (takes an argument), "on" (a switch setting True) or "off" (a `--no-…`
    switch setting False).
    """

    flag: str
    to: tuple[str, ...]
    help: str
    kind: str = "value"
    type: Callable[[str], Any] | None = None
    choices: Callable[[], tuple[str, ...]] | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        """The argparse attribute name."""
        return self.flag.removeprefix("--").replace("-", "_")


RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption(flag="--emulator", to=("emulator",), kind="on", help="start the bundled emulator"),
    RunOption(
        flag="--emulator-photos",
        to=("emulator.photos",),
        type=_positive_int,
        metavar="N",
        help="photos in the bundled emulator's corpus",
    ),
    RunOption(
        flag="--emulator-profile",
        to=("emulator.profile",),
        choices=_profiles,
        help="emulator realism profile",
    ),
    RunOption(flag="--emulator-seed", to=("emulator.seed",), type=int, help="emulator seed"),
    RunOption(flag="--flickr-url", to=("api.rest_url",), metavar="URL", help="REST endpoint"),
    RunOption(
        flag="--calls-per-hour",
        to=("api.calls_per_hour",),
        type=_positive_float,
        metavar="N",
        help="API budget of the key, shared by every worker",
    ),
    RunOption(
        flag="--sources",
        to=("sources_path",),
        type=Path,
        metavar="FILE.toml",
        help="your own sources beside the built-in map: name = [NSID, username, URL alias, ...]",
    ),
    RunOption(
        flag="--metadata-only", to=("metadata_only",), kind="on", help="search and record only"
    ),
    RunOption(
        flag="--retry-failed", to=("retry_failed",), kind="on", help="retry photos that failed"
    ),
    RunOption(flag="--workers", to=("workers",), type=_positive_int, metavar="N", help="processes"),
    RunOption(
        flag="--ray",
        to=("cluster.address",),
        metavar="local|auto|ADDRESS",
        help="image half as Ray tasks: a private Ray, or join a cluster (pip install"
        " 'harvest[ray]')",
    ),
    RunOption(
        flag="--ray-cpus",
        to=("cluster.local_cpus",),
        type=_positive_int,
        metavar="N",
        help="CPUs of the private Ray of --ray local (default: all)",
    ),
    RunOption(
        flag="--ray-flush-s",
        to=("cluster.flush_s",),
        type=_positive_float,
        metavar="S",
        help="--ray: send a directory still filling after this wait",
    ),
    RunOption(
        flag="--ray-batch",
        to=("cluster.batch_photos",),
        type=_batch_photos,
        metavar="N",
        help="--ray: photos per task at most (1-1000; default 1000, one output directory)",
    ),
    RunOption(
        flag="--ray-attempts",
        to=("cluster.max_attempts",),
        type=_positive_int,
        metavar="N",
        help="--ray: attempts of a batch before its photos fail",
    ),
    RunOption(
        flag="--shard",
        to=("shard",),
        type=_shard,
        metavar="K/N",
        help="run only shard K of N of the keywords",
    ),
    RunOption(
        flag="--window-target",
        to=("planner.window_target",),
        type=_positive_int,
        metavar="N",
        help="photos a new date window aims for",
    ),
    RunOption(
        flag="--date-field",
        to=("search.date_field",),
        type=DateField,
        choices=lambda: tuple(DateField),
        help="date the windows are cut on",
    ),
    RunOption(
        flag="--send-negatives",
        to=("search.send_negatives",),
        kind="on",
        help="also send -terms to Flickr",
    ),
    RunOption(
        flag="--size",
        to=("sizes.prefer",),
        type=SizePreference,
        choices=lambda: tuple(SizePreference),
        help="size to download first",
    ),
    RunOption(
        flag="--max-side",
        to=("sizes.max_side", "images.max_side"),
        type=_positive_int,
        metavar="PX",
        help="downscale to this long side",
    ),
    RunOption(
        flag="--min-side",
        to=("sizes.min_side", "images.min_side"),
        type=_count,
        metavar="PX",
        help="skip images whose long side is smaller",
    ),
    RunOption(
        flag="--allow-smaller",
        to=("sizes.allow_smaller",),
        kind="on",
        help="fall back to sizes below --max-side",
    ),
    RunOption(
        flag="--no-frame-strip", to=("images.strip_frames",), kind="off", help="keep borders"
    ),
    RunOption(
        flag="--concurrency",
        to=("fetch.concurrency",),
        type=_positive_int,
        metavar="N",
        help="downloads in flight",
    ),
    RunOption(
        flag="--image-rate",
        to=("fetch.rate_per_s",),
        type=_positive_float,
        metavar="PER_S",
        help="image requests per second (with --ray: the whole cluster's, per image host)",
    ),
    RunOption(
        flag="--threads", to=("threads",), type=_positive_int, metavar="N", help="image threads"
    ),
    RunOption(
        flag="--no-fsync",
        to=("write.fsync",),
        kind="off",
        help="skip fsync and the per-batch syncfs (less durable)",
    ),
    RunOption(
        flag="--output-format",
        to=("output.format",),
        type=OutputFormat,
        choices=lambda: tuple(OutputFormat),
        help="files: a JPEG per photo; webdataset: a tar (+ Parquet, stats) per directory",
    ),
    RunOption(flag="--plain", to=("plain",), kind="on", help="log lines, no live display"),
)


def config_default(path: str) -> Any:
    """The default of a config field, by its dotted path ("fetch.concurrency")."""
    section, _, name = path.rpartition(".")
    if section == "emulator":
        return getattr(BundledEmulator(), name)
    cfg: Any = RunConfig(queries_path=Path(), out_dir=Path())
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _add_option(p: argparse.ArgumentParser, opt: RunOption) -> None:
    # SUPPRESS: an option not given is absent, and its field keeps RunConfig's default.
    common: dict[str, Any] = {"dest": opt.dest, "default": argparse.SUPPRESS}
    if opt.kind != "value":
        action = "store_true" if opt.kind == "on" else "store_false"
        p.add_argument(opt.flag, action=action, help=opt.help, **common)
        return
    default = config_default(opt.to[0])
    shown = default.value if hasattr(default, "value") else default
    p.add_argument(
        opt.flag,
        type=opt.type or str,
        choices=opt.choices() if opt.choices else None,
        metavar=opt.metavar,
        help=opt.help if default is None else f"{opt.help} (default: {shown})",
        **common,
    )


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="harvest the photos of a queries file (--emulator: offline)")
    p.add_argument("queries", type=Path, help="queries file (Berg/Hays format, see README)")
    p.add_argument(
        "--out",
        default="out",
        metavar="DIR|URL",
        help="output directory or fsspec URL (s3://bucket/prefix, gs://..., file://...;"
        " a URL needs --store) (default: out)",
    )
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        metavar="DIR",
        help="a local directory for the SQLite store (and the run's state) when it is not"
        " --out: needed with a URL --out; status, export, ... then take DIR",
    )
    for opt in RUN_OPTIONS:
        _add_option(p, opt)
    p.set_defaults(handler=_cmd_run)


def _add_emulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("emulate", help="serve the local Flickr emulator for experiments")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8410)
    p.add_argument("--seed", type=int, default=BundledEmulator().seed)
    p.add_argument("--photos", type=_positive_int, default=BundledEmulator().photos)
    p.add_argument("--profile", choices=_profiles(), default=BundledEmulator().profile)
    p.add_argument("--time-scale", type=float, default=1.0, help="speed up the rate limit clock")
    p.add_argument("--invalid-keys", default="", help="comma-separated keys to reject")
    p.add_argument("--image-cache", default=None, metavar="DIR", help="cache rendered images")
    p.add_argument("--image-pool", type=int, default=0, help="load tests: reuse N images")
    p.add_argument("--image-scale", type=float, default=1.0, help="load tests: shrink images")
    p.add_argument(
        "--image-delay", type=float, default=0.0, metavar="S", help="load tests: image latency"
    )
    p.add_argument("--public-url", default=None, help="base URL image links use (containers)")
    p.set_defaults(handler=_cmd_emulate)


def _add_store_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="show a harvest's progress, during or after a run")
    p.add_argument("out", type=Path)
    p.set_defaults(handler=_cmd_status)
    p = sub.add_parser("export", help="write the records (JSONL, CSV, Parquet), HF, credits, card")
    p.add_argument("out", type=Path)
    p.add_argument("--format", choices=EXPORT_FORMATS, default="jsonl")
    p.add_argument("--output", type=Path, default=None, help="a new file (default: stdout)")
    p.add_argument(
        "--no-duplicates",
        dest="duplicates",
        action="store_false",
        help="leave out every photo that is a copy of its group's representative (harvest dupes)",
    )
    p.set_defaults(handler=_cmd_export)
    p = sub.add_parser("dupes", help="find and classify the copies within a harvest")
    p.add_argument("out", type=Path)
    p.add_argument("--pairs", type=Path, metavar="FILE.csv", help="write a,b,kind,param,distance")
    p.add_argument("--sqlite", type=Path, metavar="FILE", help="write the VISE archive layout")
    p.add_argument(
        "--crops",
        choices=["auto", "on", "off"],
        default="auto",
        help="look for cropped copies with local features (about 6 ms per photo once, "
        "0.8 GB at 100,000 photos); auto: on up to 100,000 photos (default: %(default)s)",
    )
    p.set_defaults(handler=_cmd_dupes)
    _add_match(sub)
    _add_sources(sub)
    _add_report(sub)
    _add_similar(sub)
    p = sub.add_parser("merge", help="join the outputs of --shard runs, each photo once")
    p.add_argument("sources", type=Path, nargs="+")
    p.add_argument("--into", type=Path, required=True)
    p.set_defaults(handler=_cmd_merge)


def _add_match(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("match", help="find the harvested photo each image file under DIR is")
    p.add_argument("dir", type=Path, metavar="DIR", help="image files (JPEG, PNG, TIFF); read only")
    p.add_argument("--against", type=Path, required=True, metavar="OUT", help="a harvest")
    p.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="write file,photo_id,distance,kind,verdict,larger,stage (errors: reason in kind)",
    )
    p.add_argument(
        "--albums",
        type=Path,
        metavar="FILE.csv",
        help="file,candidate_ids or group,file rows: resolve within each album",
    )
    p.add_argument(
        "--per-photo", type=Path, metavar="FILE.csv", help="write photo_id,file,distance,verdict"
    )
    p.set_defaults(handler=_cmd_match)


def _add_sources(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sources",
        help="name the institution each photo comes from (counts only, unless --apply)",
        description="Count a harvest's photos per source (owner NSID -> institution: the"
        " built-in map of Flickr sub-providers, and --sources FILE); --apply writes them into"
        " the store in short batches (safe beside a running harvest, resumes after a kill).",
    )
    p.add_argument("out", type=Path, help="a harvest's output directory")
    p.add_argument(
        "--sources",
        type=Path,
        metavar="FILE.toml",
        help="your own sources: name = [NSID, username, URL alias, ...] (default: the one the"
        " last run or --apply used, else the built-in map alone)",
    )
    p.add_argument("--apply", action="store_true", help="write the sources (default: dry run)")
    p.add_argument(
        "--rewrite-files",
        action="store_true",
        help="with --apply: also re-stamp each stored file's metadata (its image data unchanged)",
    )
    p.add_argument(
        "--flickr-url", default=FLICKR_REST_URL, metavar="URL", help="REST endpoint for look-ups"
    )
    p.set_defaults(handler=_cmd_sources)


def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a harvest")
    p.add_argument("out", type=Path, help="the harvest's output directory (read only)")
    p.add_argument(
        "--html", type=Path, metavar="FILE", help="where the page goes (default: OUT/report.html)"
    )
    p.add_argument(
        "--force", action="store_true", help="replace target files that are not harvest reports"
    )
    p.add_argument(
        "--rows",
        type=_positive_int,
        default=5000,
        metavar="N",
        help="needs-a-human rows shown in the page; needs-attention.csv has all (default: 5000)",
    )
    p.set_defaults(handler=_cmd_report)


def _add_similar(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("similar", help="find the harvested photos that show what IMAGE shows")
    p.add_argument("out", type=Path, metavar="OUT", help="a harvest (read only)")
    p.add_argument("image", type=Path, metavar="IMAGE", help="a JPEG, PNG or TIFF (first page)")
    p.add_argument("-k", type=_positive_int, default=10, metavar="K", help="hits (default 10)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON, for scripts")
    p.add_argument(
        "--embedder",
        type=Path,
        metavar="MODEL.onnx",
        help="add looks-alike candidates from the index `harvest index --embedder` built",
    )
    p.set_defaults(handler=_cmd_similar)


# --- harvest index: embeddings for looks-alike search (harvester/embedding.py) -----------------


def _add_index(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from harvester.dataset.embed import DEFAULT_SIZE_PX, Preset

    p = sub.add_parser(
        "index",
        help="make a harvest searchable by image (keypoints; embeddings with --embedder)",
        description="Give every stored photo what `harvest similar` searches: a fingerprint"
        " where the harvest predates them and a keypoint signature (crops, copies at an angle);"
        " with --embedder, also embed every stored photo with an image-embedding network"
        " exported to ONNX (a CNN or a CLIP image tower; needs pip install 'harvest[embed]')"
        " into a vector index beside the store, OUT/harvest.vectors/. Resumable: run it again"
        " after a stop or after more harvesting and it does only what is missing.",
    )
    p.add_argument("out", type=Path, help="a harvest's output directory")
    p.add_argument(
        "--embedder",
        type=Path,
        default=None,
        metavar="MODEL.onnx",
        help="also embed with this network: one float32 image input, one vector per image out",
    )
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=32,
        metavar="N",
        help="images per model call (default: %(default)s)",
    )
    p.add_argument(
        "--preset",
        choices=[preset.value for preset in Preset],
        default=None,
        help="mean/std normalisation (default: the model's metadata_props, else imagenet)",
    )
    p.add_argument(
        "--size",
        type=_positive_int,
        default=None,
        metavar="PX",
        help=f"input side for models whose H×W is dynamic (default: {DEFAULT_SIZE_PX})",
    )
    p.add_argument("--output", default=None, metavar="NAME", help="model output (default: first)")
    p.add_argument("--plain", action="store_true", help="log lines, no progress bar")
    p.set_defaults(handler=_cmd_index)


def _cmd_index(args: argparse.Namespace) -> int:
    from harvester.dataset.embed import EmbedOptions, Preset
    from harvester.embedding import run_index
    from harvester.progress import wants_live

    options = EmbedOptions(
        preset=None if args.preset is None else Preset(args.preset),
        size_px=args.size,
        output=args.output,
    )
    from harvester.similar import index_for_search

    if args.embedder is not None and not args.embedder.is_file():
        raise ConfigError(f"{args.embedder}: no such model file")
    print(index_for_search(args.out).render())
    if args.embedder is not None:
        live = wants_live(plain=args.plain)
        report = run_index(args.out, args.embedder, options=options, batch=args.batch, live=live)
        print(report.render())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = _Parser(
        prog="harvest",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"harvest {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log detail")
    # Subcommand parsers are _Parsers too (argparse uses the parent's class).
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )
    _add_run(sub)
    _add_store_commands(sub)
    _add_index(sub)
    _add_emulate(sub)
    _add_serve(sub)
    return parser


def run_config(args: argparse.Namespace) -> RunConfig:
    """Build the run configuration from parsed `run` arguments."""
    given = {
        path: getattr(args, opt.dest)
        for opt in RUN_OPTIONS
        if hasattr(args, opt.dest)
        for path in opt.to
    }
    from harvester.targets import resolve_out

    store_dir, target = resolve_out(args.out, args.store)
    if target is not None:
        given["output.target"] = target
    return build_run_config(args.queries, store_dir, given)


def build_run_config(queries: Path, out: Path, given: Mapping[str, Any]) -> RunConfig:
    """RunConfig with the fields named by dotted path in `given` set; the rest default."""
    values = dict(given)
    top: dict[str, Any] = {}
    if values.pop("emulator", False):
        top["emulator"] = BundledEmulator()
    sections: dict[str, dict[str, Any]] = defaultdict(dict)
    for path, value in values.items():
        section, _, name = path.rpartition(".")
        if section:
            sections[section][name] = value
        else:
            top[name] = value
    cfg = RunConfig(queries_path=queries, out_dir=out, **top)
    if "emulator" in sections and cfg.emulator is None:
        raise ConfigError("the --emulator-… options need --emulator")
    changed = {name: dataclasses.replace(getattr(cfg, name), **kw) for name, kw in sections.items()}
    return dataclasses.replace(cfg, **changed)


def _cmd_run(args: argparse.Namespace) -> int:
    from harvester.runner import run_command

    result = run_command(run_config(args))
    if result.summary is not None:
        print(result.summary.render(), file=sys.stderr)
    return result.code


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
            image_delay_s=args.image_delay,
        )
    )
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from harvester.store.sqlite import Store, existing_store

    with Store.open(existing_store(args.out), readonly=True) as store:
        print(store.summary().render())
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from harvester.outputs import run_export

    done = run_export(
        args.out, args.format, args.output, duplicates=args.duplicates, stdout=sys.stdout
    )
    log.info("%s", done)
    return EXIT_OK


def _cmd_dupes(args: argparse.Namespace) -> int:
    from harvester.dupes import run_dupes, write_pairs_csv, write_vise_sqlite
    from harvester.dupes_keypoints import CropMode

    report = run_dupes(args.out, crops=CropMode(args.crops))
    print(report.render())
    if args.pairs is not None:
        log.info("wrote %d pairs to %s", write_pairs_csv(args.out, args.pairs), args.pairs)
    if args.sqlite is not None:
        write_vise_sqlite(args.out, args.sqlite)
        log.info("wrote the archive layout to %s", args.sqlite)
    return EXIT_OK


def _cmd_match(args: argparse.Namespace) -> int:
    from harvester.match import check_outputs, run_match, write_csv, write_per_photo

    check_outputs(args.dir, (args.csv, args.per_photo))
    result = run_match(args.dir, args.against, albums=args.albums)
    print(result.report.render())
    if args.csv is not None:
        log.info("wrote %d rows to %s", write_csv(result.files, args.csv), args.csv)
    if args.per_photo is not None:
        count = write_per_photo(result, args.per_photo)
        log.info("wrote %d photos to %s", count, args.per_photo)
    return EXIT_OK


def _cmd_similar(args: argparse.Namespace) -> int:
    from harvester.similar import SimilarIndex, render

    if not args.image.is_file():
        raise ConfigError(f"{args.image}: no such image file")
    neighbours = None
    if args.embedder is not None:
        from harvester.embedding import EmbeddingSearch

        neighbours = EmbeddingSearch.open(args.out, args.embedder).query
    index = SimilarIndex.load(args.out, neighbours=neighbours)
    try:
        result = index.search(args.image, k=args.k)
    except ImageError as exc:
        raise ConfigError(f"{args.image}: {exc}") from exc
    if args.json:
        print(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(render(result))
    return EXIT_OK


def _cmd_sources(args: argparse.Namespace) -> int:
    from harvester.config import ApiPolicy, WritePolicy
    from harvester.flickr.keys import load_api_key
    from harvester.sources import ApiAccess, run_sources

    if args.rewrite_files and not args.apply:
        raise ConfigError("--rewrite-files rewrites files: it needs --apply")
    access = ApiAccess(out_dir=args.out, api=ApiPolicy(rest_url=args.flickr_url), key=load_api_key)
    report = run_sources(
        args.out,
        args.sources,
        access,
        apply=args.apply,
        rewrite_files=args.rewrite_files,
        write=WritePolicy(),
    )
    print(report.render())
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from harvester.reporting import run_report

    files = run_report(args.out, args.html, force=args.force, rows_shown=args.rows)
    print(files.summary)
    log.info("wrote %s and %s", files.html, files.csv)
    return EXIT_OK


def _cmd_merge(args: argparse.Namespace) -> int:
    from harvester.merge import merge_outputs

    merged = merge_outputs(list(args.sources), args.into)
    log.info("merged %d photos into %s", merged, args.into)
    return EXIT_OK


# --- harvest serve ------------------------------------------------------------------------------


def _port(text: str) -> int:
    value = _whole(text, 0)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from harvester.config import ServePolicy

    default = ServePolicy()
    p = sub.add_parser(
        "serve",
        help="browse a harvest in a local web app: live counts, photos, duplicates, search",
        description="Serve the harvest in OUT as a local web application (read-only: safe"
        " beside a running harvest). The pages and their JSON API are in README.md.",
    )
    p.add_argument("out", type=Path, help="the harvest's output directory (read only)")
    p.add_argument(
        "--host",
        default=default.host,
        help="address to listen on; anything but loopback exposes the pages, which have no"
        " login (default: %(default)s)",
    )
    p.add_argument(
        "--port", type=_port, default=default.port, help="0: any free port (default: %(default)s)"
    )
    p.add_argument(
        "--embedder",
        type=Path,
        metavar="MODEL.onnx",
        help="search by image adds looks-alike hits from `harvest index --embedder`'s index",
    )
    p.set_defaults(handler=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from harvester.config import ServePolicy
    from harvester.serving import run_serve

    def ready(url: str) -> None:
        print(f"harvest serve: {args.out} on {url} (Ctrl-C stops)", file=sys.stderr, flush=True)

    with contextlib.suppress(KeyboardInterrupt):  # how a server stops: not an interrupted job
        policy = ServePolicy(host=args.host, port=args.port)
        run_serve(args.out, policy, ready=ready, embedder=args.embedder)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------


def _setup_logging(args: argparse.Namespace) -> None:
    from harvester.progress import setup_logging, stderr_console, wants_live

    # On a terminal, log lines go through the console the live view draws on, so they scroll
    # above it; `--plain` and pipes get plain lines.
    live = wants_live(plain=getattr(args, "plain", False))
    setup_logging(args.verbose, console=stderr_console() if live else None)


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
