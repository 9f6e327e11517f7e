"""The probe kind: a behaviour check with one verdict per release (CogView4's pipeline with prompt embeddings of
different lengths; a processor written to an old attention API). Its cells have producer == consumer: the probe runs
once, when the release produces, and its result (passed, or the release's own error, and the warnings) is kept in
the manifest."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

from compat.envside.capture import captured
from compat.envside.engine import NotApplicable, Produced, Recipe, building


class ProbeRecipe(Recipe):
    """``probe(config)`` runs the behaviour in this release and raises where the release rejects it."""

    kind = "probe"
    probe = True  # the matrix must list it with ``probe: true``: a probe's verdict belongs to one release

    def __init__(self, name: str, config: Mapping[str, Any], probe: Callable):
        super().__init__(name, config)
        self._run_probe = probe

    def produce(self, folder: Path, checkpoint: str | None) -> Produced:
        with captured() as messages:
            try:
                detail = building("run the probe", self._run_probe, self.config)
                result = {"passed": True, "detail": str(detail or "")}
            except NotApplicable:
                raise
            except Exception as exc:  # noqa: BLE001 - the release's own error is the finding
                result = {"passed": False, "error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc(limit=-3)}
        result["warnings"] = messages
        return Produced(fields={"probe": result})

    def consume(self, folder: Path, manifest: dict, finding: dict, rule: dict | None) -> None:
        finding["probe"] = manifest["probe"]
