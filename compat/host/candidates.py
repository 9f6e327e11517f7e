"""Which conversion the search tries for each cell of a run, and the artifacts that decide it.

A candidate (``search.candidate``) comes from the cell's own finding and, for constructor arguments the producer's
release did not have, from the defaults recorded by the releases between producer and consumer
(``search.inherited_arguments``). The runner asks before a run (is there a conversion to try?), in the consumer's
turn, and when judging; a candidate is remembered only once all of its evidence was there to read, because a resumed
run can know a cell's finding before the releases between have produced.

Second candidates (``retries``) are tried only where the first left the keys fitting and the outputs apart (or there
was no first and the plain load did so): the first one plus, where no value was dropped, ``add_constant`` steps for
tensors the two releases initialise to different constants (``search.offset_steps``), an adapter config's new
switches set against their defaults (``search.flipped_switches``), and, from an older release to a newer one, new
constructor switches about a feature the model uses (``search.feature_switches``); where the producer has a rotary
embedding, also the same with its query and key rows permuted (``search.rotary_steps``). Where several switches are
new and no second candidate converted exactly, each switch alone is tried third. Where still none converted exactly and
no value was dropped, the first is tried fourth with only part of its arguments (``search.argument_subsets``, with
and without offsets). The second is not tried first because an offset and a changed default can be two answers to one
change (x-transformers' ``norm_add_unit_offset``); both together would count the change twice. Each later stage
waits for the ones before because most cells convert earlier: the fourth is 1,862 checks on the default
x-transformers matrix, where the three before are 13,390.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Callable

from packaging.version import Version

from compat.host import search
from compat.host.plan import Cell, Plan
from compat.host.results import ResultIndex
from compat.shared.config import merge_config

EnvKey = tuple[str, str]  # (library, version)


class Candidates:
    def __init__(self, plan: Plan, results: ResultIndex, artifact_dir: Callable[[str, str, str], Path],
                 path_for: Callable[[Cell, dict | None], Path], rule_for: Callable[[Cell], dict | None],
                 enabled: bool):
        """``artifact_dir(library, version, recipe)``, ``path_for(cell, rule)`` (where the cell's finding under a
        rule is kept) and ``rule_for(cell)`` (the rule the matrix gives it) are the run's; ``enabled`` is False for
        a run without the search."""
        self.plan, self.results, self.enabled = plan, results, enabled
        self._artifact_dir, self._path_for, self._rule_for = artifact_dir, path_for, rule_for
        self._decided: dict[Cell, dict | None] = {}
        self._retries: dict[Cell, list[dict]] = {}
        self._singles: dict[Cell, list[dict]] = {}  # each new switch alone: tried third (``_third``)
        self._subsets: dict[Cell, list[dict]] = {}  # the first's arguments in part: tried fourth (``_fourth``)
        self._manifests: dict[tuple[str, str, str], dict] = {}

    def rule(self, cell: Cell) -> tuple[dict | None, set[str]]:
        """The conversion to try for ``cell`` (None: nothing to try, or its finding is not known yet), and the
        releases between whose artifacts it still lacks. Tried only where no rule was given and the finding is an
        ``ok`` state-dict load."""
        if cell in self._decided:
            return self._decided[cell], set()
        finding = self.results.get(cell.library, self._path_for(cell, self._rule_for(cell)))
        if finding is None:
            return None, set()  # not checked yet: ask again after
        if not self._searchable(cell, finding):
            self._decided[cell] = None
            return None, set()
        inherited, lacking = self._inherited(cell)
        rule = search.candidate(finding, inherited)
        if not lacking:
            self._decided[cell] = rule
        return rule, lacking

    def retries(self, cell: Cell) -> list[dict]:
        """The second candidates, once the first one's finding (or, without one, the plain finding) is known: the
        first plus offsets and switches, where that finding has the keys fitting and the outputs apart; and where
        the producer has a rotary embedding, the same with the query and key rows permuted (both are tried: the
        permutation is right only where the two releases pair the rotary dimensions differently); where several
        switches are new, each alone too, once those are checked (``_third``); then the first with only part of its
        arguments (``_fourth``). Where the consumer could not even be built with the first one's arguments, each of
        them left out in turn, judged by the plain finding (``search.without_argument``)."""
        if cell in self._retries:
            return self._later(cell, self._retries[cell])
        first, lacking = self.rule(cell)
        if lacking or (first is None and cell not in self._decided):
            return []  # the first is not decided yet
        finding = self.results.get(cell.library, self._path_for(cell, first or self._rule_for(cell)))
        if finding is None:
            return []  # not checked yet
        bases = [(first, finding)]
        if first and search.build_refused(finding):  # x-transformers 1.31.0-1.31.1 fail on norm_add_unit_offset=True
            plain = self.results.get(cell.library, self._path_for(cell, self._rule_for(cell)))
            bases = [(search.without_argument(first, path), plain) for path in search.flat_arguments(first)]
        usable = [(base, evidence) for base, evidence in bases if evidence is not None and self._searchable(
            cell, evidence) and search.keys_fit(evidence) and not search.outputs_agree(evidence)]
        produced = self._recorded(cell.library, cell.producer, cell.recipe)
        mine = self._recorded(cell.library, cell.consumer, cell.recipe)
        if usable and (produced is None or mine is None):
            return []  # the consumer's own artifact is not there yet: ask again after
        retries: list[dict] = []
        for base, evidence in usable:
            retries += self._second(cell, base, evidence, produced, mine, alone=base is not first)
        if first and usable and not search.lost_tensors(usable[0][1]):  # a lossy cell stays lossy with fewer
            self._subsets[cell] = self._fourth_candidates(first, produced, mine, retries)
        self._retries[cell] = retries
        return self._later(cell, retries)

    def _later(self, cell: Cell, retries: list[dict]) -> list[dict]:
        """The second candidates, then the third and fourth stages as they become known."""
        third = self._third(cell, retries)
        return retries + third + self._fourth(cell, retries + third)

    def _second(self, cell: Cell, first: dict | None, finding: dict, produced: dict, mine: dict,
                alone: bool) -> list[dict]:
        """The second candidates built on ``first`` (``alone``: ``first`` itself is new, so it is one of them even
        with nothing added); each new switch alone is kept for the third stage."""
        steps = [] if search.lost_tensors(finding) else search.offset_steps(first, produced["constants"],
                                                                             mine["constants"])
        forward = search.forward_in_time(cell.producer, cell.consumer)
        switches = search.flipped_switches(finding)
        if forward:  # arguments an older consumer has and the producer lacks were removed, not added
            switches = merge_config(switches, search.feature_switches(produced["defaults"], mine["defaults"],
                                                                      produced["config"]))
        rotary = search.rotary_steps(produced["shapes"], (first or {}).get("rename") or {}, forward)
        second = []
        if steps or switches or (alone and first):
            second.append(_extended(first, steps, switches))
        if rotary:
            second.append(_extended(first, steps + rotary, switches))
        singles = search.one_by_one(switches)
        if len(singles) > 1:  # several new switches: one of them may be the change, the others new features
            self._singles.setdefault(cell, []).extend(_extended(first, steps, single) for single in singles)
        return second

    def _third(self, cell: Cell, retries: list[dict]) -> list[dict]:
        """Each new switch alone, once every second candidate is checked and none of them converted exactly: where all
        of them set together converts, trying each alone is wasted work. On the default x-transformers matrix that is
        rare (measured: 13,202 checks under a found conversion against 13,114 with the singles tried side by side), so
        this saves little there. An exact second candidate is judged converted and comes before the singles in
        ``best_searched``, so leaving them out changes no verdict."""
        singles = self._singles.get(cell, [])
        return singles if singles and self._all_checked_none_exact(cell, retries) else []

    def _fourth_candidates(self, first: dict, produced: dict, mine: dict, tried: list[dict]) -> list[dict]:
        """The first candidate with only part of its arguments (``search.argument_subsets``), each as it is and with
        offsets, less those tried before: where the first left the keys fitting without dropping values (judged by
        its finding, or by the plain one where the consumer could not be built with it). Not for lossy cells: leaving
        arguments out brings no dropped value back. Measured on the default x-transformers matrix, trying them
        anyway cost 5,919 more checks (961 cells; 1,862 without) and changed no verdict; 72 lossy cells showed a
        smaller largest difference (0.28.4 -> 1.27.1 qk-norm: max abs 5.71 against 6.44, cosine 0.22 against 0.28,
        both far from usable)."""
        steps = search.offset_steps(first, produced["constants"], mine["constants"])
        seen = {json.dumps(rule, sort_keys=True) for rule in [first, *tried]}
        fourth = []
        for subset in search.argument_subsets(first):
            for rule in (subset, _extended(subset, steps, {})) if steps else (subset,):
                text = json.dumps(rule, sort_keys=True)
                if rule and text not in seen:
                    seen.add(text)
                    fourth.append(rule)
        return fourth

    def _fourth(self, cell: Cell, tried: list[dict]) -> list[dict]:
        """The first candidate's arguments in part, once every candidate before is checked and none converted
        exactly: a changed default may be inert in the producer's release and live in the consumer's, so that
        passing the producer's value changes the model (x-transformers 1.42's softclamp values read by 1.31)."""
        subsets = self._subsets.get(cell, [])
        return subsets if subsets and self._all_checked_none_exact(cell, [self.rule(cell)[0], *tried]) else []

    def _all_checked_none_exact(self, cell: Cell, rules: list[dict | None]) -> bool:
        """Every one of ``rules`` was checked for ``cell`` (else: ask again after) and none converted exactly."""
        findings = [self.results.get(cell.library, self._path_for(cell, rule)) for rule in rules]
        return all(finding is not None for finding in findings) and not any(
            search.outputs_agree(finding) for finding in findings)

    def _searchable(self, cell: Cell, finding: dict) -> bool:
        """The search runs on ``ok`` findings of cells the matrix gives no rule, in runs that want it: state-dict
        loads, and adapters whose worker knew the layout it expected before loading (peft's; ``expected_layout``),
        so that it can take a rule."""
        convertible = finding.get("kind") == "state-dict" or (
            finding.get("kind") == "adapter" and isinstance(finding.get("expected_constants"), dict))
        return self.enabled and self._rule_for(cell) is None and convertible and finding.get("status") == "ok"

    def evidence(self, cells: list[Cell]) -> set[tuple[EnvKey, str]]:
        """The releases and recipes whose artifacts the search reads for ``cells`` besides their producers': the
        defaults recorded by every release between a producer and its consumer. Per recipe, the releases from the
        oldest to the newest its cells name (the union of their spans)."""
        named: dict[tuple[str, str], set[str]] = {}
        for cell in cells:
            named.setdefault((cell.library, cell.recipe), set()).update((cell.producer, cell.consumer))
        found = set()
        for (library, recipe), versions in named.items():
            releases = self._releases(library)
            places = [releases.index(version) for version in versions if version in releases]
            if len(places) > 1:
                found |= {((library, version), recipe) for version in releases[min(places):max(places) + 1]}
        return found

    def new_arguments(self, cell: Cell) -> list[str]:
        """``search.new_arguments`` from the cell's producer and consumer artifacts ([] while either is missing)."""
        produced = self._recorded(cell.library, cell.producer, cell.recipe)
        mine = self._recorded(cell.library, cell.consumer, cell.recipe)
        return search.new_arguments(produced["defaults"], mine["defaults"], produced["config"]) \
            if produced and mine else []

    def _inherited(self, cell: Cell) -> tuple[dict, set[str]]:
        lacking: set[str] = set()

        def recorded(version: str) -> tuple[dict, dict]:
            found = self._recorded(cell.library, version, cell.recipe)
            if found is None:
                lacking.add(version)
                return {}, {}
            return found["defaults"], found["config"]
        releases = self._releases(cell.library)
        return search.inherited_arguments(cell.producer, cell.consumer, releases, recorded), lacking

    @functools.lru_cache(maxsize=None)  # noqa: B019 - one Candidates per run
    def _releases(self, library: str) -> list[str]:
        """The plan's releases of ``library`` (not unreleased sources), oldest first."""
        return sorted((v for v in self.plan.versions(library) if not self.plan.unreleased(library, v)), key=Version)

    def _recorded(self, library: str, version: str, recipe: str) -> dict | None:
        """What a release's artifact recorded for the search: its constructor ``defaults``, its ``config``, its
        initial ``constants`` ({} where it has none) and its tensors' ``shapes``, or None while it has no artifact
        (not remembered: it may be produced later in the run)."""
        key = (library, version, recipe)
        if key not in self._manifests:
            try:
                manifest = json.loads((self._artifact_dir(*key) / "manifest.json").read_text())
            except (OSError, ValueError):
                return None
            self._manifests[key] = {name: manifest[name] if isinstance(manifest.get(name), dict) else {}
                                    for name in ("defaults", "config", "constants")}
            keys = manifest.get("keys") if isinstance(manifest.get("keys"), dict) else {}
            self._manifests[key]["shapes"] = {name: entry["shape"] for name, entry in keys.items()
                                              if isinstance(entry, dict) and isinstance(entry.get("shape"), list)}
        return self._manifests[key]


def _extended(first: dict | None, steps: list[dict], arguments: dict) -> dict:
    """The first candidate with more steps and constructor arguments."""
    rule = dict(first or {})
    if steps:
        rule["steps"] = [*rule.get("steps", []), *steps]
    if arguments:
        rule["consumer_args"] = merge_config(rule.get("consumer_args", {}), arguments)
    return rule
