"""Upgrading a user's checkpoint to another release: write it only when loading it there was verified.

``compat upgrade`` runs ``compat check`` against one release: the checkpoint is loaded in the release it was saved
with and in the target, on the recipe's inputs. Identical or equivalent: the file is rewritten as it is (a pickle
becomes safetensors). Converted: the rename rule that made the outputs agree is applied. Anything else: nothing is
written, and the answer says what does not carry over (keys the target misses, keys it has no place for, how far
the outputs moved). The written file carries compat's stamp (library, the target release, the constructor arguments,
with any the verified rule sets for the target, such as a default that changed) and where it came from, so the next
upgrade needs no arguments.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from packaging.version import Version

from compat.host.keydiff import convert, open_checkpoint
from compat.host.outcome import CellResult
from compat.host.plan import Cell
from compat.host.search import invented_tensors, lost_tensors
from compat.host.user import UserCheckpoint
from compat.host.user_adapter import CONFIG_FILE, WEIGHTS_FILE, read_adapter_config
from compat.host.user_model import model_files
from compat.host.wording import counted
from compat.shared.config import merge_config
from compat.shared.rules import RuleSet
from compat.shared.stamp import PREFIX

CARRIED = ("identical", "equivalent", "converted")


def evidence_releases(results: list[CellResult], new_arguments: Callable[[Cell], list[str]], versions: list[str],
                      planned: list[str], saved_with: str) -> list[str]:
    """The matrix's ``versions`` a check must also produce in (beyond the ``planned`` ones): those between the
    release a checkpoint was saved with and a target where the target has constructor arguments the checkpoint's
    release did not (``new_arguments(cell)``), and the target was not reached or was reached only by offsets. The
    search gives such an argument the value of the first release that had it (``search.inherited_arguments``), so it
    needs those releases' recorded defaults; and an offset may stand in for an argument (x-transformers'
    ``norm_add_unit_offset`` stores norms as ``w - 1``): asked first, the releases between give the conversion the
    matrix finds, the argument, with the checkpoint's values as saved. Not where the best conversion already drops
    values: no argument brings them back."""
    unsettled = [r.cell.consumer for r in results if (r.verdict not in CARRIED or _by_offsets(r.finding.get("rule")))
                 and r.finding.get("status") == "ok" and not lost_tensors(r.finding) and new_arguments(r.cell)]
    if not unsettled:
        return []
    ordered = sorted({saved_with, *unsettled}, key=Version)
    low, high, planned_set = Version(ordered[0]), Version(ordered[-1]), set(planned)
    return [v for v in versions if low < Version(v) < high and v not in planned_set]


def _by_offsets(rule: dict | None) -> bool:
    return any(step.get("op") == "add_constant" for step in (rule or {}).get("steps") or [])


@dataclass
class Upgrade:
    target: str
    result: CellResult
    written: Path | None
    rule: dict | None
    checked: list[CellResult] = field(default_factory=list)  # every release tried (``--to newest-exact``)

    @property
    def carried(self) -> bool:
        return self.result.verdict in CARRIED


def write_upgraded(checkpoint: UserCheckpoint, result: CellResult, out: Path, accept_lossy: bool = False) -> Upgrade:
    """Write ``checkpoint`` for ``result``'s consumer release if the cell carried it (with its rule, if any), or,
    with ``accept_lossy``, if the best conversion found loads there but loses what ``what_is_lost`` says."""
    target = result.cell.consumer
    if result.verdict not in CARRIED and not (accept_lossy and result.underlying == "lossy"):
        return Upgrade(target, result, None, None)
    rule = result.finding.get("rule") if result.underlying in ("converted", "lossy") else None
    rules = RuleSet.from_data(rule or {}, "the verified rule")
    # an adapter's consumer_args are fields of its own config file; a model's, constructor arguments in the stamp
    config = merge_config(checkpoint.config or {}, rules.consumer_args) if checkpoint.form == "state-dict" \
        else checkpoint.config
    stamp = {PREFIX + "library": checkpoint.library, PREFIX + "version": target,
             PREFIX + "config": json.dumps(config, sort_keys=True),
             PREFIX + "upgraded_from": f"{checkpoint.saved_with} ({checkpoint.path.name})",
             PREFIX + "rules": json.dumps(rules.to_data(), sort_keys=True)}
    if checkpoint.form == "adapter":
        write_adapter(checkpoint.path, rules, out, stamp)
    elif checkpoint.form == "pretrained":  # the library's own loader read it as it is: the same files, stamped
        write_model(checkpoint.path, out, stamp)
    else:
        convert(open_checkpoint(checkpoint.path), rules, out, stamp)
    return Upgrade(target, result, out, rule)


def write_model(folder: Path, out: Path, stamp: dict[str, str]) -> None:
    """A model folder as it is, its weights with compat's stamp."""
    out.mkdir(parents=True, exist_ok=True)
    for path in model_files(folder):
        if path.suffix == ".safetensors":
            convert(open_checkpoint(path), RuleSet([]), out / path.name, dict(stamp, format="pt"))
        else:
            shutil.copyfile(path, out / path.name)


def write_adapter(folder: Path, rules: RuleSet, out: Path, stamp: dict[str, str]) -> None:
    """An adapter folder for the target release: its tensors through the rule (with compat's stamp), its config with
    the rule's ``consumer_args`` as fields (a switch the target reads with another default)."""
    config = read_adapter_config(folder)
    out.mkdir(parents=True, exist_ok=True)
    convert(open_checkpoint(folder / WEIGHTS_FILE), rules, out / WEIGHTS_FILE, dict(stamp, format="pt"))
    (out / CONFIG_FILE).write_text(json.dumps(dict(config, **rules.consumer_args), indent=2, sort_keys=True) + "\n")


def what_is_lost(result: CellResult) -> list[str]:
    """What does not carry over, from the cell's evidence: keys either side lacks, and the outputs' distance."""
    finding = result.finding
    keys = finding.get("keys") or {}
    lines = []
    if keys.get("missing"):
        needed = counted(len(keys["missing"]), "tensor")
        lines.append(f"the target release needs {needed} the checkpoint does not have: "
                     + ", ".join(keys["missing"][:8]) + (" ..." if len(keys["missing"]) > 8 else ""))
    if keys.get("unexpected"):
        lines.append(f"the target release has no place for {counted(len(keys['unexpected']), 'tensor')}: "
                     + ", ".join(keys["unexpected"][:8]) + (" ..." if len(keys["unexpected"]) > 8 else ""))
    for name, stats in (finding.get("outputs") or {}).items():
        if isinstance(stats, dict) and "max_abs" in stats:
            lines.append(f"output {name}: max abs {stats['max_abs']}, cosine {stats.get('cosine')}")
    lost, invented = lost_tensors(finding), invented_tensors(finding.get("rule"))
    if result.underlying == "lossy":
        lines.insert(0, "no exact conversion was found; the best one loads in the target release, but:")
    if lost:
        lines.append(f"it drops {counted(len(lost), 'tensor')} that hold values: " + ", ".join(lost[:8])
                     + (" ..." if len(lost) > 8 else ""))
    if invented:
        added = counted(len(invented), "tensor")
        lines.append(f"it adds {added} the checkpoint never had (a norm's scale 1, else 0): "
                     + ", ".join(invented[:8]) + (" ..." if len(invented) > 8 else ""))
    tried = finding.get("search") or {}
    if tried.get("summary"):
        lines.append(f"the conversion the search tried settled nothing: {tried['verdict']}: {tried['summary']}")
    return lines or [result.summary]
