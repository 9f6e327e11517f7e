"""The matrix: what to test, as plain dataclasses (libraries, version selectors, recipes and their tolerances, pins,
conversion rules, known breaks), and the questions the plan and the judges ask of it.

``matrix_file.py`` reads ``matrix.yaml`` into these, collecting every problem with its file:line. Nothing here touches
the network; whether a version exists is checked when the plan resolves selectors against the registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from compat import PACKAGE_ROOT

SAMPLES = ("all", "newest-patch-per-minor", "newest-per-major")
UPSTREAM = ("documented", "undocumented")
DEFAULT_TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}
DEFAULT_TIMEOUT = 900.0
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
IMPORT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
SHIPPED_FIXTURES = PACKAGE_ROOT / "fixtures"  # the recipes compat ships, per library


@dataclass(frozen=True)
class Tolerance:
    """An output agrees when ``max_abs <= atol + rtol * max|reference|`` (and cosine >= ``cosine`` if set)."""

    atol: float
    rtol: float
    cosine: float | None = None

    def allows(self, stats: dict) -> bool:
        if not stats.get("shape_match") or isinstance(stats.get("max_abs"), str):
            return False
        bound = self.atol + self.rtol * float(stats.get("ref_max_abs", 0.0))
        if stats["max_abs"] > bound:
            return False
        return self.cosine is None or (not isinstance(stats["cosine"], str) and stats["cosine"] >= self.cosine)


@dataclass(frozen=True)
class RecipeSpec:
    name: str
    tolerance: Tolerance
    outputs: dict[str, Tolerance] = field(default_factory=dict)
    probe: bool = False  # a behaviour check with one verdict per release (cells producer == consumer only)
    where: str = ""  # file:line of its name in the matrix

    def tolerance_for(self, output: str) -> Tolerance:
        return self.outputs.get(output, self.tolerance)


@dataclass(frozen=True)
class VersionSelector:
    """A release: ``exact``, ``latest``, ``latest-pre`` (pre-releases too), or ``range`` (a specifier set, with a
    ``sample`` rule; ``pre`` admits pre-releases). An unreleased version (``sources.py``): ``path`` (a source folder),
    ``git`` (a repository URL or folder, at ``ref``), ``wheel`` or ``sdist`` (a file); ``value`` is absolute."""

    kind: str
    value: str
    sample: str = "all"
    where: str = ""
    ref: str = ""
    pre: bool = False


@dataclass(frozen=True)
class Pin:
    versions: SpecifierSet
    requirements: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Uninstallable:
    """Releases that cannot be installed here, with the reason: tried on every run (a failed attempt is remembered
    per environment key), shown in the report, and a declaration whose releases install after all is stale."""

    versions: SpecifierSet
    reason: str
    where: str


@dataclass(frozen=True)
class KnownBreak:
    producers: SpecifierSet
    consumers: SpecifierSet
    recipes: tuple[str, ...] | None
    reason: str
    link: str | None
    upstream: str
    where: str

    def covers(self, recipe: str, producer: str, consumer: str) -> bool:
        return ((self.recipes is None or recipe in self.recipes)
                and _contains(self.producers, producer) and _contains(self.consumers, consumer))


_MATCHING: dict[tuple[int, str, str], tuple[tuple, frozenset]] = {}


def _matching(breaks: tuple[KnownBreak, ...], side: str, version: str) -> frozenset[int]:
    """Indexes of the declarations whose ``side`` range contains ``version``, remembered per tuple of declarations:
    specifier matching is slow, and a matrix of thousands of cells asks the same few questions over and over."""
    key = (id(breaks), side, version)
    cached = _MATCHING.get(key)
    if cached is None or cached[0] is not breaks:
        found = frozenset(i for i, b in enumerate(breaks) if _contains(getattr(b, side), version))
        cached = _MATCHING[key] = (breaks, found)
    return cached[1]


_CONTAINS: dict[tuple[int, str], tuple[SpecifierSet, bool]] = {}


def _contains(specifier: SpecifierSet, version: str) -> bool:
    """Remembered by the specifier's identity: a matrix of thousands of cells asks the same few questions, and both
    packaging's matching and its specifier hashing are slow."""
    cached = _CONTAINS.get((id(specifier), version))
    if cached is None or cached[0] is not specifier:
        cached = _CONTAINS[(id(specifier), version)] = (specifier, specifier.contains(version, prereleases=True))
    return cached[1]


@dataclass(frozen=True)
class ConversionRule:
    """A rule that makes a producer range's checkpoints load in a consumer range (cells become ``converted``)."""

    producers: SpecifierSet
    consumers: SpecifierSet
    recipes: tuple[str, ...] | None
    rule: dict  # RuleSet data (compat.shared.rules)
    why: str
    where: str

    def covers(self, recipe: str, producer: str, consumer: str) -> bool:
        return ((self.recipes is None or recipe in self.recipes)
                and _contains(self.producers, producer) and _contains(self.consumers, consumer))


@dataclass(frozen=True)
class LibrarySpec:
    name: str
    package: str
    import_name: str
    fixtures: Path
    versions: tuple[VersionSelector, ...]
    recipes: dict[str, RecipeSpec]
    pins: tuple[Pin, ...] = ()
    known_breaks: tuple[KnownBreak, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    rules: tuple[ConversionRule, ...] = ()
    uninstallable: tuple[Uninstallable, ...] = ()
    fixtures_problem: str | None = None  # where compat looked for a recipe module that does not exist

    def pins_for(self, version: str) -> tuple[str, ...]:
        return tuple(r for pin in self.pins if pin.versions.contains(version, prereleases=True)
                     for r in pin.requirements)

    def rule_for(self, recipe: str, producer: str, consumer: str) -> ConversionRule | None:
        return next((r for r in self.rules if r.covers(recipe, producer, consumer)), None)

    def known_break(self, recipe: str, producer: str, consumer: str) -> KnownBreak | None:
        """The first declaration covering the cell (a matrix asks this for every one of its cells)."""
        candidates = _matching(self.known_breaks, "producers", producer) & _matching(self.known_breaks, "consumers",
                                                                                        consumer)
        return next((self.known_breaks[i] for i in sorted(candidates)
                     if self.known_breaks[i].recipes is None or recipe in self.known_breaks[i].recipes), None)


@dataclass(frozen=True)
class Matrix:
    path: Path
    libraries: dict[str, LibrarySpec]


def parse_selector(text: str, where: str = "") -> VersionSelector:
    """A version selector as the matrix and every command that takes versions write it: an exact release
    (``0.28.4``), ``latest`` (the newest stable release), ``latest-pre`` (the newest, pre-releases included) or a
    range (``>=1.0,<2``). ``ValueError`` says what is expected."""
    text = text.strip()
    if text in ("latest", "latest-pre"):
        return VersionSelector(text, text, where=where)
    if text[:1] in ("<", ">", "=", "!", "~"):
        try:
            return VersionSelector("range", str(SpecifierSet(text)), "all", where)
        except InvalidSpecifier:
            raise ValueError(f"expected a version range such as '>=1.0,<2', got {text!r}") from None
    try:
        return VersionSelector("exact", str(Version(text)), where=where)
    except InvalidVersion:
        raise ValueError(f"expected a release version (e.g. '0.28.4'), 'latest', 'latest-pre' or a range "
                         f"(e.g. '>=1.0,<2'), got {text!r}") from None
