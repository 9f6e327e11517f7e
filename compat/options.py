"""The command line's options, one subparser per command: what ``compat --help`` shows. Handlers are in ``cli``."""

from __future__ import annotations

import argparse
from pathlib import Path

from compat.host.locate import CACHE_HELP, MATRIX_HELP
from compat.host.plan import parse_shard
from compat.shared.errors import CompatError


def _shard(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except CompatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compat", description="Cross-release checkpoint compatibility matrix.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the matrix and write the report")
    run.add_argument("--matrix", help=MATRIX_HELP)
    run.add_argument("--out", default="report", help="report folder (default: report/)")
    run.add_argument("--cache-dir", type=Path, help=CACHE_HELP)
    run.add_argument("-k", dest="select", action="append", help="only cells whose id matches (glob or text)")
    run.add_argument("--unreleased", action="store_true",
                     help="only the cells unreleased versions (path, git, wheel, sdist entries) read: a pull request's "
                          "check of the new code against every release's checkpoints")
    run.add_argument("--artifacts", type=Path, help="a store of release artifacts (a folder CI caches or a "
                     "repository commits): releases' artifacts are read from it instead of building their "
                     "environments, and those made in this run are added to it")
    run.add_argument("--shard", type=_shard, help="run shard i of n (consumer environments split round-robin)")
    run.add_argument("--baseline", type=Path, help="a previous report.json: lead the report with what changed")
    run.add_argument("--jobs", type=int, default=2, help="workers busy at once (default 2, measured best on 2 cores)")
    run.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    run.add_argument("--timeout", type=float, help="seconds a worker may go without progress (default: matrix)")
    run.add_argument("--worker-memory", type=int, help="address-space limit per worker, in MB")
    run.add_argument("--no-search", dest="search", action="store_false",
                     help="do not search for a conversion where a release refuses a checkpoint's keys (the cells "
                          "stay as the plain load left them)")
    survey_parser = commands.add_parser("survey", help="find the releases where saved layouts or outputs change")
    survey_parser.add_argument("library")
    survey_parser.add_argument("--range", dest="spec", help="releases to survey, e.g. '>=0.28.4' (default: all)")
    survey_parser.add_argument("--matrix", help="matrix file whose recipes and pins to use")
    survey_parser.add_argument("--cache-dir", type=Path)
    survey_parser.add_argument("--grid", type=int, default=16, help="releases probed in the first pass")
    survey_parser.add_argument("--jobs", type=int, default=2)
    bisect_parser = commands.add_parser(
        "bisect", help="find every release where a checkpoint's verdict changes (a recipe's, or your --checkpoint)")
    bisect_parser.add_argument("library", nargs="?", help="the library (default: from the checkpoint's metadata)")
    bisect_parser.add_argument("--recipe", help="a recipe of the matrix (or give --checkpoint)")
    bisect_parser.add_argument("--checkpoint", type=Path, help="your own checkpoint instead of a recipe's")
    bisect_parser.add_argument("--good", help="the release that saved the checkpoint (default: --checkpoint's)")
    bisect_parser.add_argument("--bad", required=True, help="a later release where the verdict differs ('latest')")
    _user_checkpoint_options(bisect_parser)
    bisect_parser.add_argument("--matrix", help="matrix file whose recipes and pins to use")
    bisect_parser.add_argument("--cache-dir", type=Path)
    pins_parser = commands.add_parser("pins", help="the newest release that reads each release's checkpoints")
    pins_parser.add_argument("report", type=Path, nargs="?", default=Path("report/report.json"))
    pins_parser.add_argument("--producer", action="append", default=[],
                             help="LIBRARY==VERSION your checkpoints were saved with (for --constraints)")
    pins_parser.add_argument("--constraints", type=Path, help="write a pip constraints file for --producer")
    pins_parser.add_argument("--recipe", action="append", help="consider only these recipes (default: all)")
    check_parser = commands.add_parser("check", help="load your own checkpoint in other releases")
    check_parser.add_argument("checkpoint", type=Path, help="a .safetensors state dict (or a torch.save file, "
                              "with --allow-pickle), or a peft adapter folder")
    check_parser.add_argument("--against", nargs="+", required=True,
                              help="releases to load it with: versions, 'latest', ranges such as '>=1.0,<2'")
    check_parser.add_argument("--library", help="default: from the checkpoint's compat metadata")
    _user_checkpoint_options(check_parser)
    check_parser.add_argument("--matrix", help="matrix file that names the library's recipe module and pins")
    check_parser.add_argument("--cache-dir", type=Path)
    check_parser.add_argument("--out", type=Path, help="also write report.json/report.md/index.html here")
    check_parser.add_argument("--rules-out", type=Path, help="write the conversion rules that worked (YAML)")
    upgrade_parser = commands.add_parser("upgrade", help="rewrite your checkpoint for another release, verified")
    upgrade_parser.add_argument("checkpoint", type=Path, help="a .safetensors state dict (or a torch.save file, "
                                "with --allow-pickle), or a peft adapter folder")
    upgrade_parser.add_argument("--to", required=True, help="the release to load it with: a version, 'latest', or "
                                "'newest-exact' (the newest of the matrix's releases it reaches exactly)")
    upgrade_parser.add_argument("-o", "--out", type=Path, required=True,
                                help="the .safetensors file to write (for an adapter: the folder)")
    upgrade_parser.add_argument("--library", help="default: from the checkpoint's compat metadata")
    upgrade_parser.add_argument("--accept-lossy", action="store_true",
                                help="write it even when no exact conversion exists and the best one loses values "
                                     "(said before it is written)")
    _user_checkpoint_options(upgrade_parser)
    upgrade_parser.add_argument("--matrix", help="matrix file that names the library's recipe module and pins")
    upgrade_parser.add_argument("--cache-dir", type=Path)
    diff_parser = commands.add_parser("diff", help="compare two checkpoints; --infer proposes a rule set")
    diff_parser.add_argument("a", type=Path)
    diff_parser.add_argument("b", type=Path)
    diff_parser.add_argument("--infer", action="store_true", help="match tensors by content and propose rules")
    diff_parser.add_argument("--json", action="store_true", help="print JSON")
    diff_parser.add_argument("--rules-out", type=Path, help="write the inferred rule set (YAML)")
    diff_parser.add_argument("--allow-pickle", action="store_true",
                             help="read .bin/.pt/.ckpt files, with torch.load(weights_only=True)")
    convert_parser = commands.add_parser("convert", help="apply a rule set to a checkpoint")
    convert_parser.add_argument("checkpoint", type=Path)
    convert_parser.add_argument("--rules", type=Path, required=True)
    convert_parser.add_argument("-o", "--out", type=Path, required=True)
    convert_parser.add_argument("--verify", type=Path, help="a reference checkpoint the result must equal bitwise "
                                "(or within --atol/--rtol)")
    convert_parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance for --verify")
    convert_parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for --verify "
                                "(times the reference tensor's largest absolute value)")
    convert_parser.add_argument("--allow-pickle", action="store_true",
                                help="read a .bin/.pt/.ckpt source, with torch.load(weights_only=True)")
    merge_parser = commands.add_parser("merge", help="merge shard reports of one matrix into one report")
    merge_parser.add_argument("reports", type=Path, nargs="+", help="report.json files (or folders holding one)")
    merge_parser.add_argument("--out", default="report", help="report folder (default: report/)")
    merge_parser.add_argument("--baseline", type=Path, help="a previous report.json: lead with what changed")
    declare_parser = commands.add_parser(
        "known-breaks", help="propose known-break declarations (YAML) covering a report's red cells")
    declare_parser.add_argument("report", type=Path, help="a report.json")
    declare_parser.add_argument("--library", help="only this library")
    declare_parser.add_argument("--source", help="the library's repository URL, for links to upstream diffs")
    declare_parser.add_argument("--tag-prefix", default="", help="how the library's release tags start (e.g. v)")
    return parser


def _user_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe-config", type=Path, help="JSON or YAML constructor arguments (default: from the "
                        "checkpoint's compat metadata); for an adapter, the widths it does not record: "
                        '{"layers": {"encoder.query": [in_features, out_features]}}')
    parser.add_argument("--saved-with", help="the release that saved it (default: from its metadata)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="read a .pt/.bin/.ckpt checkpoint, with torch.load(weights_only=True)")
