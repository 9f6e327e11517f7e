"""Releases a matrix declares it cannot install here (``uninstallable:``): tried, shown with the reason, never
silently left out.

Each declared release of the registry (stable, not yanked, not already among the matrix's versions) is an install
check with the id ``library/cannot-install/version``. Its environment is built like any other; a refusal is
remembered per environment key (``Store.install_check``), so a rerun does not try again, and a release that installs
after all makes the declaration stale (red, like a known break that no longer breaks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from compat.host.environments import EnvironmentBuilder, EnvRequest
from compat.host.matrix import LibrarySpec, Uninstallable
from compat.host.registry import Release
from compat.host.store import Store
from compat.shared.errors import CompatError

ERROR_LINES = 40  # the tail of uv's message kept in the report


@dataclass(frozen=True)
class InstallCheck:
    library: str
    version: str
    declared: Uninstallable
    request: EnvRequest

    @property
    def id(self) -> str:
        return f"{self.library}/cannot-install/{self.version}"


def install_checks(library: LibrarySpec, releases: list[Release], versions: list[str]) -> list[InstallCheck]:
    """One check per release an ``uninstallable`` declaration covers."""
    checks = []
    for release in releases:
        if release.yanked or release.parsed.is_prerelease or release.version in versions:
            continue
        declared = next((d for d in library.uninstallable if d.versions.contains(release.version)), None)
        if declared is not None:
            checks.append(InstallCheck(library.name, release.version, declared, EnvRequest(
                library.name, library.package, release.version, library.pins_for(release.version), release.uploaded)))
    return checks


def try_install(check: InstallCheck, builder: EnvironmentBuilder) -> dict:
    """The check's outcome: ``installs`` and, when it does not, uv's message."""
    record = Store(builder.cache_dir).install_check(builder.key(check.request))
    outcome = {"id": check.id, "library": check.library, "version": check.version, "reason": check.declared.reason,
               "declared_at": check.declared.where}
    try:
        return dict(outcome, **json.loads(record.read_text()))
    except (OSError, ValueError):
        pass
    try:
        builder.build(check.request)
    except CompatError as exc:
        refused = {"installs": False, "error": "\n".join(str(exc).strip().splitlines()[-ERROR_LINES:])}
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(refused))
        return dict(outcome, **refused)
    return dict(outcome, installs=True, error="")


def summary(outcome: dict) -> str:
    """One line for the report and pytest."""
    if outcome["installs"]:
        return (f"{outcome['library']} {outcome['version']} installs: the declaration at {outcome['declared_at']} "
                f"({outcome['reason']}) is stale; add the release to the matrix's versions")
    return (f"{outcome['library']} {outcome['version']} cannot be installed here: {outcome['reason']} "
            f"({telling_line(outcome['error'])})")


def telling_line(message: str) -> str:
    """The line of uv's message that says what went wrong: the last one naming an error, not uv's hints."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()] or ["no message"]
    facts = [line for line in lines if not line.lower().startswith(("hint:", "help:"))] or lines
    return next((line for line in reversed(facts) if "error" in line.lower()), facts[-1])
