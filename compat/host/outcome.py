"""What a run gives back: a judged cell, and the counts and timings of the work done."""

from __future__ import annotations

from dataclasses import dataclass, field

from compat.host.plan import Cell


@dataclass
class CellResult:
    cell: Cell
    verdict: str
    underlying: str
    summary: str
    finding: dict
    known_break: dict | None = None
    stale_known_break: bool = False

    def to_json(self) -> dict:
        return {"id": self.cell.id, "library": self.cell.library, "recipe": self.cell.recipe,
                "producer": self.cell.producer, "consumer": self.cell.consumer, "verdict": self.verdict,
                "underlying": self.underlying, "summary": self.summary, "evidence": self.finding,
                "known_break": self.known_break, "stale_known_break": self.stale_known_break}


@dataclass
class RunStats:
    built: int = 0
    spawned: int = 0
    produced: int = 0
    consumed: int = 0
    searched: int = 0  # cells checked again under a conversion the search proposed
    seconds: float = 0.0
    import_seconds: list = field(default_factory=list)
    # per library: worker imports, and the recipes' own produce and consume time measured inside the workers (the
    # compute floor of benchmarks/matrix_walltime.py)
    by_library: dict = field(default_factory=dict)

    def add(self, library: str, what: str, seconds: float) -> None:
        entry = self.by_library.setdefault(library, {"workers": 0, "import": 0.0, "produce": 0.0, "consume": 0.0})
        entry[what] += seconds
