"""Reading ``matrix.yaml``: every problem found in one pass, each with its file:line, then one ``MatrixError``.

The matrix's types live in ``matrix.py``; this module only turns a (bounded) YAML document into them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from compat.host.matrix import (
    DEFAULT_TIMEOUT,
    DEFAULT_TOLERANCE,
    IMPORT,
    NAME,
    SAMPLES,
    SHIPPED_FIXTURES,
    UPSTREAM,
    ConversionRule,
    KnownBreak,
    LibrarySpec,
    Matrix,
    Pin,
    RecipeSpec,
    Tolerance,
    Uninstallable,
    VersionSelector,
    parse_selector,
)
from compat.host.sources import SOURCE_KINDS
from compat.host.yamlsource import Located, load_located
from compat.shared.errors import CompatError, MatrixError


def default_matrix_path() -> Path:
    """The matrix found from the working directory, else the shipped default (see ``locate``)."""
    from compat.host.locate import find_matrix

    return find_matrix().path


def load_matrix(path: Path | str | None = None) -> Matrix:
    path = Path(path) if path is not None else default_matrix_path()
    if not path.is_file():
        raise MatrixError([f"{path}: matrix file not found"])
    try:
        located = load_located(path, "matrix file")
    except yaml.YAMLError as exc:
        raise MatrixError([f"{path}: not valid YAML: {exc}"]) from None
    except CompatError as exc:
        raise MatrixError([str(exc)]) from None
    return _Validator(located, path).matrix()


class _Validator:
    """Walks the parsed document, collecting problems instead of stopping at the first."""

    def __init__(self, located: Located, path: Path):
        self.doc, self.path, self.problems = located, path, []
        self.missing: set[tuple] = set()  # keys already reported missing: one message each, not two

    def problem(self, where: tuple, message: str) -> None:
        if where in self.missing:
            return
        name = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in where).replace(".[", "[")
        self.problems.append(f"{self.path}:{self.doc.line(where)}: {name or '(top level)'}: {message}")

    def where(self, at: tuple) -> str:
        return f"{self.path}:{self.doc.line(at)}"

    def mapping(self, value: Any, at: tuple, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            self.problem(at, f"expected a mapping, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.problem(at + (key,), f"unknown key {key!r}; expected one of {', '.join(sorted(allowed))}")
        for key in sorted(required - set(value)):
            self.problem(at, f"missing required key {key!r}")
            self.missing.add(at + (key,))
        return value

    def string(self, value: Any, at: tuple, *, raw: bool = False) -> str | None:
        if raw and isinstance(value, (int, float)) and not isinstance(value, bool):
            return self.doc.raw.get(at, str(value))
        if not isinstance(value, str) or not value.strip():
            self.problem(at, f"expected a non-empty string, got {_kind(value)}")
            return None
        return value.strip()

    def number(self, value: Any, at: tuple, minimum: float = 0.0) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            self.problem(at, f"expected a number >= {minimum}, got {_kind(value)}")
            return None
        return float(value)

    def specifier(self, value: Any, at: tuple) -> SpecifierSet | None:
        text = self.string(value, at, raw=True)
        if text is None:
            return None
        if text in ("*", "any"):
            return SpecifierSet()
        if text[0].isdigit():
            text = f"=={text}"
        try:
            return SpecifierSet(text)
        except InvalidSpecifier:
            self.problem(at, f"expected a version range such as '>=1.0,<2', got {text!r}")
            return None

    def matrix(self) -> Matrix:
        top = self.mapping(self.doc.data, (), {"defaults", "libraries"}, {"libraries"})
        defaults = self.mapping(top.get("defaults", {}), ("defaults",), {"tolerance", "timeout"})
        tolerance = self.tolerance(defaults.get("tolerance", {}), ("defaults", "tolerance"),
                                   Tolerance(**DEFAULT_TOLERANCE))
        timeout = DEFAULT_TIMEOUT
        if "timeout" in defaults:
            timeout = self.number(defaults["timeout"], ("defaults", "timeout"), 1) or DEFAULT_TIMEOUT
        libraries = {}
        raw_libraries = top.get("libraries", {})
        if not isinstance(raw_libraries, dict) or not raw_libraries:
            self.problem(("libraries",), f"expected a mapping of library name to its settings, "
                                         f"got {_kind(raw_libraries)}")
            raw_libraries = {}
        for name, raw in raw_libraries.items():
            if not self.name(name, ("libraries", name), "library"):
                continue
            library = self.library(str(name), raw, ("libraries", name), tolerance, timeout)
            if library:
                libraries[library.name] = library
        if self.problems:
            raise MatrixError(self.problems)
        return Matrix(path=self.path, libraries=libraries)

    def name(self, value: Any, at: tuple, what: str) -> bool:
        """Library and recipe names become folder names and test ids: letters, digits, '.', '_' and '-'."""
        if isinstance(value, str) and NAME.fullmatch(value):
            return True
        self.problem(at, f"expected a {what} name of letters, digits, '.', '_' and '-', got {_kind(value)}")
        return False

    def tolerance(self, value: Any, at: tuple, base: Tolerance, allow_outputs: bool = False) -> Tolerance:
        allowed = {"atol", "rtol", "cosine"} | ({"outputs"} if allow_outputs else set())
        value = self.mapping(value, at, allowed)
        numbers = {key: self.number(value[key], at + (key,)) for key in ("atol", "rtol", "cosine") if key in value}
        return Tolerance(**{**base.__dict__, **{k: v for k, v in numbers.items() if v is not None}})

    def library(self, name: str, raw: Any, at: tuple, tolerance: Tolerance, timeout: float) -> LibrarySpec | None:
        allowed = {"package", "import", "fixtures", "versions", "recipes", "pins", "known_breaks", "rules", "timeout",
                   "uninstallable"}
        raw = self.mapping(raw, at, allowed, {"import", "versions", "recipes"})
        if not raw:
            return None
        import_name = self.string(raw.get("import"), at + ("import",)) or ""
        if import_name and not IMPORT.fullmatch(import_name):
            self.problem(at + ("import",), f"expected a module name such as x_transformers, got {import_name!r}")
            import_name = ""
        package = self.string(raw.get("package", name), at + ("package",)) or name
        fixtures, fixtures_problem = self.fixtures(raw.get("fixtures"), import_name, at + ("fixtures",))
        if "timeout" in raw:
            timeout = self.number(raw["timeout"], at + ("timeout",), 1) or timeout
        return LibrarySpec(
            name=name, package=package, import_name=import_name, fixtures=fixtures, fixtures_problem=fixtures_problem,
            versions=self.versions(raw["versions"], at + ("versions",)) if "versions" in raw else (),
            recipes=self.recipes(raw["recipes"], at + ("recipes",), tolerance) if "recipes" in raw else {},
            pins=self.pins(raw.get("pins", []), at + ("pins",)),
            known_breaks=self.known_breaks(raw.get("known_breaks", []), at + ("known_breaks",)),
            timeout=timeout, rules=self.rules(raw.get("rules", []), at + ("rules",)),
            uninstallable=self.uninstallable(raw.get("uninstallable", []), at + ("uninstallable",)))

    def fixtures(self, raw: Any, import_name: str, at: tuple) -> tuple[Path, str | None]:
        """The recipe module: ``fixtures:`` (relative to the matrix file's folder), else ``fixtures/<import>.py``
        beside the matrix, else the one compat ships for that library; and, where it does not exist, the problem
        saying where it looked (reported with the registry's problems when the plan is made, so that neither hides
        the other)."""
        where = f"{self.where(at)}: {'.'.join(map(str, at))}"
        if raw is not None:
            text = self.string(raw, at)
            path = (self.path.parent / text).resolve() if text else self.path.parent
            if text and not path.is_file():
                return path, (f"{where}: recipe module {path} does not exist (a relative path is taken from the "
                              f"matrix file's folder, {self.path.parent.resolve()})")
            return path, None
        beside, shipped = self.path.parent / "fixtures" / f"{import_name}.py", SHIPPED_FIXTURES / f"{import_name}.py"
        if beside.is_file():
            return beside.resolve(), None
        if shipped.is_file():
            return shipped, None
        offered = ", ".join(sorted(p.stem for p in SHIPPED_FIXTURES.glob("[!_]*.py")))
        return beside.resolve(), (f"{where}: no recipe module for {import_name!r}: looked for {beside.resolve()} "
                                  f"and {shipped} (compat ships recipes for {offered}); name one with `fixtures:`")

    def versions(self, raw: Any, at: tuple) -> tuple[VersionSelector, ...]:
        if not isinstance(raw, list) or not raw:
            self.problem(at, f"expected a non-empty list of versions, got {_kind(raw)}")
            return ()
        selectors = []
        for index, item in enumerate(raw):
            item_at = at + (index,)
            if isinstance(item, dict) and set(item) & set(SOURCE_KINDS):
                selector = self.unreleased(item, item_at)
                if selector is not None:
                    selectors.append(selector)
                continue
            if isinstance(item, dict):
                item = self.mapping(item, item_at, {"range", "sample", "pre"}, {"range"})
                spec = self.specifier(item.get("range"), item_at + ("range",))
                sample = item.get("sample", "all")
                if sample not in SAMPLES:
                    self.problem(item_at + ("sample",), f"expected one of {', '.join(SAMPLES)}, got {sample!r}")
                pre = item.get("pre", False)
                if not isinstance(pre, bool):
                    self.problem(item_at + ("pre",), f"expected true or false, got {_kind(pre)}")
                if spec is not None:
                    selectors.append(VersionSelector("range", str(spec), sample, self.where(item_at), pre=pre is True))
                continue
            text = self.string(item, item_at, raw=True)
            if text is None:
                continue
            try:
                selectors.append(parse_selector(text, self.where(item_at)))
            except ValueError as exc:
                self.problem(item_at, f"{exc}, or {{range, sample, pre}}, or an unreleased version: "
                                      f"{{path}}, {{git, ref}}, {{wheel}} or {{sdist}}")
        return tuple(selectors)

    def unreleased(self, item: dict, at: tuple) -> VersionSelector | None:
        """``{path: DIR}``, ``{git: URL, ref: REF}``, ``{wheel: FILE}`` or ``{sdist: FILE}``: paths are relative to
        the matrix file's folder and must exist (a git URL that is not a folder is left to git)."""
        kinds = [k for k in SOURCE_KINDS if k in item]
        if len(kinds) > 1:
            self.problem(at, f"expected one of {', '.join(SOURCE_KINDS)}, got {' and '.join(kinds)}")
            return None
        kind = kinds[0]
        item = self.mapping(item, at, {kind, "ref"} if kind == "git" else {kind}, {kind})
        text = self.string(item.get(kind), at + (kind,), raw=True)
        ref = self.string(item.get("ref", "HEAD"), at + ("ref",), raw=True) if kind == "git" else ""
        if text is None or ref is None:
            return None
        if kind == "git" and ("://" in text or text.startswith("git@")):
            return VersionSelector("git", text, where=self.where(at), ref=ref)
        location = (self.path.parent / text).resolve()
        expected = {"path": "a folder", "git": "a repository folder or URL", "wheel": "a .whl file",
                    "sdist": "a .tar.gz or .zip file"}[kind]
        fits = {"path": location.is_dir(), "git": location.is_dir(), "wheel": location.is_file()
                and location.suffix == ".whl", "sdist": location.is_file() and location.name.endswith(
                (".tar.gz", ".zip"))}[kind]
        if not fits:
            self.problem(at + (kind,), f"expected {expected}, got {text!r} ({location} "
                                       f"{'is not one' if location.exists() else 'does not exist'})")
            return None
        return VersionSelector(kind, str(location), where=self.where(at), ref=ref)

    def recipes(self, raw: Any, at: tuple, tolerance: Tolerance) -> dict[str, RecipeSpec]:
        if isinstance(raw, list):
            raw = {name: {} for name in raw if self.string(name, at) is not None}
        if not isinstance(raw, dict) or not raw:
            self.problem(at, f"expected a list of recipe names or a mapping of recipe to settings, got {_kind(raw)}")
            return {}
        recipes = {}
        for name, settings in raw.items():
            if not self.name(name, at + (name,), "recipe"):
                continue
            settings = self.mapping(settings or {}, at + (name,), {"tolerance", "probe"})
            probe = settings.get("probe", False)
            if not isinstance(probe, bool):
                self.problem(at + (name, "probe"), f"expected true or false, got {_kind(probe)}")
                probe = False
            tol_at = at + (name, "tolerance")
            raw_tol = settings.get("tolerance", {})
            recipe_tolerance = self.tolerance(raw_tol, tol_at, tolerance, allow_outputs=True)
            outputs = {}
            raw_outputs = raw_tol.get("outputs", {}) if isinstance(raw_tol, dict) else {}
            names = set(raw_outputs) if isinstance(raw_outputs, dict) else set()
            for output, raw_output in self.mapping(raw_outputs, tol_at + ("outputs",), names).items():
                outputs[output] = self.tolerance(raw_output, tol_at + ("outputs", output), recipe_tolerance)
            recipes[str(name)] = RecipeSpec(str(name), recipe_tolerance, outputs, probe, self.where(at + (name,)))
        return recipes

    def pins(self, raw: Any, at: tuple) -> tuple[Pin, ...]:
        pins = []
        for item_at, item in self.entries(raw, at, "{versions, requirements, why}"):
            item = self.mapping(item, item_at, {"versions", "requirements", "why"}, {"versions", "requirements", "why"})
            spec = self.specifier(item.get("versions"), item_at + ("versions",))
            requirements = item.get("requirements")
            if not isinstance(requirements, list) or not requirements:
                self.problem(item_at + ("requirements",), f"expected a list of requirements, got {_kind(requirements)}")
                requirements = []
            for r_index, requirement in enumerate(requirements):
                try:
                    Requirement(str(requirement))
                except InvalidRequirement as exc:
                    self.problem(item_at + ("requirements", r_index), f"not a valid requirement: {exc}")
            why = self.string(item.get("why"), item_at + ("why",))
            if spec is not None and why:
                pins.append(Pin(spec, tuple(map(str, requirements)), why))
        return tuple(pins)

    def entries(self, raw: Any, at: tuple, what: str) -> list[tuple[tuple, Any]]:
        """(path, item) for each item of a list field; a field that is not a list is one problem and no items."""
        if not isinstance(raw, list):
            self.problem(at, f"expected a list of {what}, got {_kind(raw)}")
            return []
        return [(at + (index,), item) for index, item in enumerate(raw)]

    def cell_range(self, item: dict, item_at: tuple) -> tuple[SpecifierSet | None, SpecifierSet | None,
                                                              tuple[str, ...] | None]:
        """The producers, consumers and (optional) recipes a known break or a conversion rule covers."""
        producers = self.specifier(item.get("producers"), item_at + ("producers",))
        consumers = self.specifier(item.get("consumers"), item_at + ("consumers",))
        recipes = item.get("recipes")
        if recipes is not None and (not isinstance(recipes, list) or not all(isinstance(r, str) for r in recipes)):
            self.problem(item_at + ("recipes",), f"expected a list of recipe names, got {_kind(recipes)}")
            recipes = None
        return producers, consumers, tuple(recipes) if recipes else None

    def rules(self, raw: Any, at: tuple) -> tuple[ConversionRule, ...]:
        from compat.shared.rules import RuleError, RuleSet

        rules = []
        for item_at, item in self.entries(raw, at, "conversion rules"):
            item = self.mapping(item, item_at, {"producers", "consumers", "recipes", "rule", "why"},
                                {"producers", "consumers", "rule", "why"})
            producers, consumers, recipes = self.cell_range(item, item_at)
            why = self.string(item.get("why"), item_at + ("why",))
            try:
                RuleSet.from_data(item.get("rule"), "rule")  # validated here; kept as written, for the report
                rule = item.get("rule")
            except RuleError as exc:
                self.problem(item_at + ("rule",), str(exc))
                rule = None
            if producers is not None and consumers is not None and why and rule:
                rules.append(ConversionRule(producers, consumers, recipes, rule, why, self.where(item_at)))
        return tuple(rules)

    def uninstallable(self, raw: Any, at: tuple) -> tuple[Uninstallable, ...]:
        declared = []
        for item_at, item in self.entries(raw, at, "{versions, reason}"):
            item = self.mapping(item, item_at, {"versions", "reason"}, {"versions", "reason"})
            spec = self.specifier(item.get("versions"), item_at + ("versions",))
            reason = self.string(item.get("reason"), item_at + ("reason",))
            if spec is not None and reason:
                declared.append(Uninstallable(spec, reason, self.where(item_at)))
        return tuple(declared)

    def known_breaks(self, raw: Any, at: tuple) -> tuple[KnownBreak, ...]:
        breaks = []
        for item_at, item in self.entries(raw, at, "known breaks"):
            item = self.mapping(item, item_at, {"producers", "consumers", "recipes", "reason", "link", "upstream"},
                                {"producers", "consumers", "reason"})
            producers, consumers, recipes = self.cell_range(item, item_at)
            reason = self.string(item.get("reason"), item_at + ("reason",))
            link = item.get("link")
            if link is not None and not (isinstance(link, str) and link.startswith(("http://", "https://"))):
                self.problem(item_at + ("link",), f"expected an http(s) URL, got {link!r}")
                link = None
            upstream = item.get("upstream", "documented" if link else "undocumented")
            if upstream not in UPSTREAM:
                self.problem(item_at + ("upstream",), f"expected one of {', '.join(UPSTREAM)}, got {upstream!r}")
            if producers is not None and consumers is not None and reason:
                breaks.append(KnownBreak(producers, consumers, recipes, reason, link, upstream, self.where(item_at)))
        return tuple(breaks)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__
