"""The ``compat`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from compat.api import bisect, check, prepare, run_and_report, survey
from compat.host.history import load_report, merge_files
from compat.host.report import counts, write_report
from compat.host.runner import RunOptions
from compat.host.search import rule_lines
from compat.host.wording import counted
from compat.options import build_parser
from compat.shared.errors import CompatError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"run": _run, "survey": _survey, "known-breaks": _known_breaks, "merge": _merge, "bisect": _bisect,
                "pins": _pins, "check": _check, "upgrade": _upgrade, "diff": _diff, "convert": _convert}
    try:
        return handlers[args.command](args)
    except CompatError as exc:  # a handler that let one through: still one line
        print(f"compat: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last guard: a bug in compat is one line too, with how to see more
        if os.environ.get("COMPAT_DEBUG"):
            raise
        print(f"compat: internal error: {type(exc).__name__}: {exc} (a bug in compat: please report it; "
              "COMPAT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 3


def _run(args: argparse.Namespace) -> int:
    try:
        session = prepare(args.matrix, args.cache_dir, args.select, args.shard,
                          RunOptions(jobs=args.jobs, threads=args.threads, timeout=args.timeout,
                                     memory_mb=args.worker_memory, search=args.search), args.unreleased,
                          args.artifacts)
        outcome = run_and_report(session, Path(args.out), args.baseline)
    except CompatError as exc:
        print(f"compat: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("compat: interrupted; finished cells are cached and the next run resumes from them", file=sys.stderr)
        return 130
    for line in outcome.lead:
        print(f"compat: {line}")
    print(f"compat: {sum(outcome.counts.values())} cells: " + ", ".join(f"{k} {v}" for k, v in outcome.counts.items()))
    if outcome.unchanged:
        print(f"compat: nothing changed since the report in {outcome.folder}/ was written; it stands")
    else:
        print(f"compat: report written to {outcome.folder}/ (report.json, report.md, index.html)")
    if outcome.red:
        print(f"compat: {outcome.red} cells are red and not declared as known breaks (exit 1); the report says why")
    return 1 if outcome.red else 0


def _read_user_checkpoint(args: argparse.Namespace, path: Path):
    from compat.api import read_constructor_arguments, user_checkpoint

    config = read_constructor_arguments(args.recipe_config) if args.recipe_config else None
    return user_checkpoint(path, args.library, config, args.saved_with, args.allow_pickle)


def _bisect(args: argparse.Namespace) -> int:
    from compat.host.bisect import expected_builds
    from compat.host.renames import probable_renames
    from compat.host.report import evidence_lines

    try:
        if args.checkpoint is None and not (args.library and args.recipe and args.good):
            raise CompatError("bisect: give LIBRARY --recipe R --good G (a recipe of the matrix), or --checkpoint "
                              "(your own)")
        checkpoint = _read_user_checkpoint(args, args.checkpoint) if args.checkpoint else None
        found = bisect(args.library, args.recipe, args.good, args.bad, args.matrix, args.cache_dir,
                       checkpoint=checkpoint)
    except CompatError as exc:
        print(f"compat: error: {exc}", file=sys.stderr)
        return 2
    what = f"{args.checkpoint}" if checkpoint else f"{found.library}/{found.recipe}"
    print(f"compat: {what}, saved with {found.library}=={found.good}: {found.candidates} releases from "
          f"{found.good} to {found.bad}; {counted(len(found.changes), 'change')} of verdict:")
    for change in found.changes:
        print(f"  {change.version} (uploaded {change.uploaded[:10]}): {change.before} -> {change.after}")
        print(f"    {change.result.summary}")
        for line in evidence_lines(change.result.finding):
            print(f"    {line}")
        for old, new in probable_renames(change.result.finding.get("keys", {}))[:10]:
            print(f"    probable rename: {old} -> {new}")
    print(f"compat: environments built or reused: {found.environments_used} "
          f"(bound: {expected_builds(found.candidates, len(found.changes))})")
    return 0


def _diff(args: argparse.Namespace) -> int:
    import json

    import yaml

    from compat.host.inference import diff_files
    from compat.host.keydiff import open_checkpoint

    try:
        found = diff_files(open_checkpoint(args.a, args.allow_pickle), open_checkpoint(args.b, args.allow_pickle),
                           args.infer)
    except CompatError as exc:
        print(f"compat: error: {exc}", file=sys.stderr)
        return 2
    if found.get("nothing_matched"):
        print(f"compat: warning: no tensor of {args.a} matches a tensor of {args.b} by name or content: these look "
              "like checkpoints of different models, so no rules are proposed"
              + (f" and {args.rules_out} is not written" if args.rules_out else ""), file=sys.stderr)
    if args.rules_out and "rules" in found:
        args.rules_out.write_text(yaml.safe_dump(found["rules"], sort_keys=False))
    if args.json:
        print(json.dumps(found, indent=1))
    else:
        print(f"{len(found['equal'])} equal, {len(found['different'])} different, {len(found['only_a'])} only in A, "
              f"{len(found['only_b'])} only in B, {len(found['shape'])} shape and {len(found['dtype'])} dtype changes")
        for key in ("only_a", "only_b", "different"):
            for name in found[key]:
                print(f"  {key.replace('_', ' ')}: {name}")
        for change in found["shape"] + found["dtype"]:
            print(f"  changed {change['key']}: {change['a']} -> {change['b']}")
        if "rules" in found:
            print("inferred rules:\n" + yaml.safe_dump(found["rules"], sort_keys=False).rstrip())
            for name in found["unexplained"]:
                print(f"  no tensor of A explains {name}")
    same = not any(found[k] for k in ("only_a", "only_b", "shape", "dtype", "different"))
    return 0 if same else 1


def _convert(args: argparse.Namespace) -> int:
    import yaml

    from compat.host.keydiff import convert, open_checkpoint
    from compat.host.yamlsource import load_data
    from compat.shared.rules import RuleSet

    try:
        try:
            data = load_data(args.rules, "rule file")
        except yaml.YAMLError as exc:
            raise CompatError(f"{args.rules}: cannot read the rules: {exc}") from None
        rules = RuleSet.from_data(data, str(args.rules))
        conversion = convert(open_checkpoint(args.checkpoint, args.allow_pickle), rules, args.out,
                             {"compat.rules": json.dumps(rules.to_data()), "compat.source": str(args.checkpoint)})
        print(f"compat: wrote {args.out} ({counted(len(conversion.layout), 'tensor')})")
        for note in conversion.notes:
            print(f"compat: {note}")
        if args.verify:
            return _verify(args)
    except CompatError as exc:
        print(f"compat: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _verify(args: argparse.Namespace) -> int:
    """0 when the converted file equals the reference: bitwise, or within the tolerances where some were given."""
    from compat.host.keydiff import open_checkpoint, verify
    from compat.host.matrix import Tolerance

    found = verify(open_checkpoint(args.out), open_checkpoint(args.verify), Tolerance(args.atol, args.rtol))
    if found.problems:
        print(f"compat: {args.out} differs from {args.verify}:")
        for kind, items in found.problems.items():
            for item in items[:50]:
                print(f"  {kind.replace('_', ' ')}: {item}")
        return 1
    if found.within:
        print(f"compat: verified: {found.equal} tensors equal {args.verify} bit for bit, {len(found.within)} within "
              f"tolerance (largest difference {max(w for _, w in found.within):.3g})")
    else:
        print(f"compat: verified: all {found.equal} tensors equal {args.verify} bit for bit")
    return 0


def _check(args: argparse.Namespace) -> int:
    from compat.host.renames import probable_renames
    from compat.host.report import build_report, evidence_lines
    from compat.host.user import write_rule_files

    try:
        run, results = check(_read_user_checkpoint(args, args.checkpoint), args.against, args.matrix, args.cache_dir)
    except CompatError as exc:
        print(f"compat: error: {exc}", file=sys.stderr)
        return 2
    rules = {}
    for result in results:
        print(f"{result.cell.producer} -> {result.cell.consumer}: {result.verdict}: {result.summary}")
        for line in evidence_lines(result.finding):
            print(f"    {line}")
        rule = result.finding.get("rule") or {}
        if result.verdict == "converted" and rule:
            rules[result.cell.consumer] = rule
            for line in rule_lines(rule)[:12]:
                print(f"    rule: {line}")
        elif result.verdict not in ("identical", "equivalent", "lossy"):
            for old, new in probable_renames(result.finding.get("keys", {}))[:10]:
                print(f"    probable rename: {old} -> {new}")
        tried = result.finding.get("search") or {}
        if tried.get("summary"):  # the summary says how it ended; these are its first steps
            steps = rule_lines(tried["rule"] or {})
            print(f"    the search tried: {'; '.join(steps[:3])}{' ...' if len(steps) > 3 else ''}")
    if args.rules_out:
        for path in write_rule_files(args.rules_out, results[0].cell.producer, rules):
            print(f"compat: rules written to {path} (read by compat convert --rules)")
    if args.out:
        report = build_report([r.to_json() for r in results], run.environment_records(), str(args.checkpoint),
                              run.builder.torch_version)
        print(f"compat: report written to {write_report(report, args.out)[0].parent}/")
    return 0 if all(r.verdict in ("identical", "equivalent", "converted") for r in results) else 1


def _upgrade(args: argparse.Namespace) -> int:
    from compat.api import upgrade
    from compat.host.report import evidence_lines
    from compat.host.upgrade import what_is_lost

    try:
        checkpoint = _read_user_checkpoint(args, args.checkpoint)
        done = upgrade(checkpoint, args.to, args.out, args.matrix, args.cache_dir, accept_lossy=args.accept_lossy)
    except CompatError as exc:
        print(f"compat: error: {exc}", file=sys.stderr)
        return 2
    for tried in done.checked:  # --to newest-exact: every release of the matrix, then the newest reached exactly
        print(f"{tried.cell.producer} -> {tried.cell.consumer}: {tried.verdict}: {tried.summary}")
    if done.checked:
        print(f"compat: the newest release it reaches exactly: {done.target}")
    result = done.result
    if not done.checked:
        print(f"{result.cell.producer} -> {result.cell.consumer}: {result.verdict}: {result.summary}")
    if done.written and result.underlying == "lossy":
        print(f"compat: wrote {done.written} (--accept-lossy): it loads in {done.target}, but it is not the model "
              "it was; what is lost:")
        for line in what_is_lost(result) + [f"rule: {line}" for line in rule_lines(done.rule or {})]:
            print(f"    {line}")
        return 0
    if done.written:
        steps = rule_lines(done.rule or {})
        how = f" with a conversion of {counted(len(steps), 'step')}" if steps else " as it is"
        settings = {"adapter": "its adapter_config.json the fields the conversion sets",
                    "pretrained": "its other files are as they were"}.get(checkpoint.form, "the constructor arguments")
        print(f"compat: wrote {done.written}: loads in {done.target}{how}, outputs verified in both releases; its "
              f"metadata names {done.target} and {settings}")
        for line in steps[:12]:
            print(f"    {line}")
        return 0
    for line in evidence_lines(result.finding):
        print(f"    {line}")
    lossy = " (--accept-lossy writes the best one found)" if result.underlying == "lossy" else ""
    print(f"compat: not written: no verified conversion to {done.target}{lossy}; what does not carry over:")
    for line in what_is_lost(result):
        print(f"    {line}")
    return 1


def _pins(args: argparse.Namespace) -> int:
    from compat.host.pins import advice, constraint, table_lines

    try:
        cells = load_report(args.report)["cells"]
        table = advice([c for c in cells if not args.recipe or c["recipe"] in args.recipe])
        wanted = dict(p.split("==", 1) for p in args.producer if "==" in p)
        if len(wanted) != len(args.producer):
            raise CompatError(f"--producer: expected LIBRARY==VERSION, got {args.producer}")
        for library, version in wanted.items():
            if not any(row["producer"] == version for row in table.get(library, [])):
                raise CompatError(f"{args.report}: no cells for {library}=={version}")
    except CompatError as exc:
        print(f"compat: error: {exc}", file=sys.stderr)
        return 2
    for library, rows in table.items():
        print("\n".join(table_lines(library, rows)))
    if args.constraints:
        if not wanted:
            print("compat: error: --constraints needs --producer LIBRARY==VERSION", file=sys.stderr)
            return 2
        lines = [constraint(library, next(r for r in table[library] if r["producer"] == version))
                 for library, version in wanted.items()]
        args.constraints.write_text("\n".join(lines) + "\n")
        print(f"compat: constraints written to {args.constraints}: " + "; ".join(lines))
    return 0


def _merge(args: argparse.Namespace) -> int:
    try:
        paths = [p / "report.json" if p.is_dir() else p for p in args.reports]
        merged = merge_files(paths, Path(args.baseline) if args.baseline else None)
    except CompatError as exc:
        print(f"compat: error: {exc}", file=sys.stderr)
        return 2
    written = write_report(merged, Path(args.out))
    print(f"compat: merged {counted(len(paths), 'report')}: {counted(len(merged['cells']), 'cell')}: "
          + ", ".join(f"{k} {v}" for k, v in counts(merged["cells"]).items()))
    print(f"compat: report written to {written[0].parent}/")
    return 0


def _known_breaks(args: argparse.Namespace) -> int:
    import yaml

    from compat.host.declare import propose

    try:
        cells = load_report(args.report)["cells"]
    except CompatError as exc:
        print(f"compat: error: {exc}", file=sys.stderr)
        return 2
    libraries = sorted({c["library"] for c in cells if args.library in (None, c["library"])})
    for library in libraries:
        declarations = propose([c for c in cells if c["library"] == library], args.source, args.tag_prefix)
        print(f"# {library}: {len(declarations)} proposed known breaks; read and correct each reason")
        print(yaml.safe_dump({"known_breaks": declarations}, sort_keys=False, width=120))
    return 0


def _survey(args: argparse.Namespace) -> int:
    try:
        changes, probed, versions = survey(args.library, args.spec, args.matrix, args.cache_dir, args.grid,
                                           RunOptions(jobs=args.jobs))
    except CompatError as exc:
        print(f"compat: error: {exc}", file=sys.stderr)
        return 2
    print(f"compat: {counted(len(versions), 'release')}, {probed} probed, {counted(len(changes), 'change point')}")
    for change in changes:
        print(f"  {change.before} -> {change.after}: {'; '.join(change.notes)}")
    keep = sorted({v for c in changes for v in (c.before, c.after)} | {versions[0], versions[-1]},
                  key=versions.index)
    print("versions for the matrix: " + ", ".join(keep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
