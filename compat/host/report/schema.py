"""The report's schema as pydantic models: what every command that reads a report back relies on.

A report is input too (``--baseline``, ``compat merge``, ``compat pins``, ``compat known-breaks``): a field of the
wrong type must be one error naming the cell and the field, not a traceback in whichever command touched it first.
Models are strict (no string becomes a number) and open (fields a later compat adds are kept); containers that code
reads with ``.get(name, {})`` may be absent but never ``null``. See docs/report-schema.md.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from compat.host.verdicts import LADDER

Verdict = Literal[LADDER]  # type: ignore[valid-type]
Number = Optional[float | int | str]  # statistics: a number, or a word ("inf", "n/a") where there is none


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class OutputStats(_Model):
    shape_match: Optional[bool] = None
    bitwise: Optional[bool] = None
    missing: Optional[bool] = None
    max_abs: Number = None
    max_rel: Number = None
    cosine: Number = None
    ref_max_abs: Number = None


class Moved(_Model):
    key: str
    producer: Any
    consumer: Any


class Keys(_Model):
    missing: list[str] = []
    unexpected: list[str] = []
    shape: list[Moved] = []
    dtype: list[Moved] = []
    shapes: dict[str, list[int]] = {}


class Default(_Model):
    producer: Any
    consumer: Any


class ConfigEvidence(_Model):
    unknown_fields: list[str] = []
    new_fields: list[str] = []
    changed_defaults: dict[str, Default] = {}


class Adapter(_Model):
    applied: Optional[bool] = None
    changed_output_in_producer: Optional[bool] = None
    vs_own_base: dict[str, Any] = {}


class Evidence(_Model):
    kind: Optional[str] = None
    status: Optional[str] = None
    failed: Optional[str] = None
    reason: Optional[str] = None
    load_error: Optional[str] = None
    forward_error: Optional[str] = None
    keys: Keys = Keys()
    config: ConfigEvidence = ConfigEvidence()
    adapter: Optional[Adapter] = None
    load_warnings: list[str] = []
    rule: Optional[dict[str, Any]] = None
    rule_notes: list[str] = []
    defaults_changed: dict[str, list[Any]] = {}
    search: Optional[dict[str, Any]] = None
    tensors_changed_on_load: list[str] = []
    outputs: dict[str, OutputStats] = {}


class KnownBreakRef(_Model):
    reason: str
    link: Optional[str] = None
    upstream: str
    declared_at: str


class Cell(_Model):
    id: str
    library: str
    recipe: str
    producer: str
    consumer: str
    verdict: Verdict
    underlying: Verdict
    summary: str
    evidence: Evidence
    known_break: Optional[KnownBreakRef] = None
    stale_known_break: bool = False

    @field_validator("producer", "consumer")
    @classmethod
    def _release(cls, value: str) -> str:
        try:
            Version(value)
        except InvalidVersion:
            raise ValueError(f"{value!r} is not a release version") from None
        return value

    @model_validator(mode="after")
    def _declared(self) -> "Cell":
        if self.verdict == "known-break" and self.known_break is None:
            raise ValueError("a known-break cell must name its known_break")
        return self


class Host(_Model):
    python: str
    torch: str
    platform: str


class ChangedCell(_Model):
    id: str
    before: str
    after: str
    kind: str
    summary: str


class Changes(_Model):
    baseline: dict[str, Optional[str]]
    changed: list[ChangedCell]
    new_releases: list[str]
    new_cells: list[str]
    removed_cells: list[str]


class InstallOutcome(_Model):
    id: str
    library: str
    version: str
    reason: str
    declared_at: str
    installs: bool
    error: str


class Report(_Model):
    schema_: int = Field(alias="schema")
    compat: str
    created: str
    host: Host
    matrix: str
    matrix_digest: str = ""
    shard: Optional[str] = None
    stats: dict[str, float | int] = {}
    environments: dict[str, dict[str, dict[str, Any]]] = {}
    cells: list[Cell]
    uninstallable: list[InstallOutcome] = []
    changes: Optional[Changes] = None


def report_problem(report: Any) -> str | None:
    """The first problem of a parsed report, as ``field.path: what is wrong``, or None."""
    try:
        Report.model_validate(report)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in error["loc"])
        where = where.replace(".[", "[")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"{where or 'the report'}: {error['msg']}{more}"
    return None
