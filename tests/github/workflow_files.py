"""What the runner harness reads and reports: workflow files, inputs, permissions, the
``GITHUB_OUTPUT``/``GITHUB_ENV`` file commands, masking, and the results of a run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .expressions import to_string


class WorkflowError(AssertionError):
    """A workflow the runner refuses: bad inputs or secrets, an unknown action or expression."""


def load(path_or_text: Path | str) -> dict[str, Any]:
    """A workflow or action file (``on:`` kept as a key, not YAML 1.1's ``True``)."""
    text = path_or_text.read_text("utf-8") if isinstance(path_or_text, Path) else path_or_text
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise WorkflowError("a workflow is a mapping")
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


@dataclass
class Step:
    """What one step did."""

    name: str
    outcome: str  # success, failure or skipped
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""  # as GitHub shows it: secrets and ::add-mask:: values are ***
    raw_log: str = ""  # unmasked: what a test searches for leaked secrets
    env: frozenset[str] = frozenset()  # names of the non-empty variables the step was given


@dataclass
class Job:
    """What one job did (a reusable workflow called by a job shows up as its jobs)."""

    id: str
    result: str  # success, failure or skipped
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    environment: str | None = None
    summary: str = ""
    raw_summary: str = ""
    called: Run | None = None

    @property
    def log(self) -> str:
        """All steps' masked logs."""
        inner = self.called.log if self.called else ""
        return inner + "".join(f"## {s.name}\n{s.log}" for s in self.steps)


@dataclass
class Run:
    """What one workflow run did."""

    jobs: dict[str, Job] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    concurrency: str = ""

    @property
    def log(self) -> str:
        """Every step's masked log, job after job."""
        return "".join(j.log for j in self.jobs.values())

    @property
    def raw_log(self) -> str:
        """Every step's unmasked log."""
        return "".join(s.raw_log for j in self._all_jobs() for s in j.steps)

    def step(self, name: str) -> Step:
        """The step of that name (first one, in any job)."""
        return next(s for j in self._all_jobs() for s in j.steps if s.name == name)

    @property
    def summary(self) -> str:
        """Every job's step summary."""
        return "".join(j.summary for j in self._all_jobs())

    @property
    def raw_summary(self) -> str:
        """Every job's unmasked step summary."""
        return "".join(j.raw_summary for j in self._all_jobs())

    @property
    def outputs_files(self) -> str:
        """Every step output (what ended up in GITHUB_OUTPUT)."""
        return "".join(
            json.dumps(s.outputs) for j in self._all_jobs() for s in j.steps if s.outputs
        )

    def _all_jobs(self) -> list[Job]:
        found = []
        for j in self.jobs.values():
            found.append(j)
            if j.called:
                found.extend(j.called._all_jobs())
        return found

    def job(self, job_id: str) -> Job:
        """A job, looking inside called workflows too."""
        return next(j for j in self._all_jobs() if j.id == job_id)


LEVELS = {"none": 0, "read": 1, "write": 2}
_SCOPES = (
    "actions attestations checks contents deployments discussions id-token issues models "
    "packages pages pull-requests repository-projects security-events statuses"
).split()


def grants(permissions: Any) -> dict[str, int]:
    """A ``permissions:`` value as scope -> level (none 0, read 1, write 2)."""
    if permissions in ("read-all", "write-all"):
        level = LEVELS[str(permissions).split("-")[0]]
        return dict.fromkeys(_SCOPES, level)
    if isinstance(permissions, dict):
        return {str(k): LEVELS[str(v)] for k, v in permissions.items()}
    raise WorkflowError(f"bad permissions {permissions!r}")


def parse_file_command(text: str, what: str) -> dict[str, str]:
    """``name=value`` and ``name<<DELIM`` ... ``DELIM`` lines, as GitHub reads GITHUB_OUTPUT/ENV."""
    found, lines, i = {}, text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        eq, heredoc = line.find("="), line.find("<<")
        if heredoc != -1 and (eq == -1 or heredoc < eq):
            name, delim, body = line[:heredoc], line[heredoc + 2 :], []
            while i < len(lines) and lines[i] != delim:
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise WorkflowError(f"{what}: no closing {delim!r} for {name!r}")
            i += 1
            found[name] = "\n".join(body)
        elif eq > 0:
            found[line[:eq]] = line[eq + 1 :]
        else:
            raise WorkflowError(f"{what}: invalid line {line!r}")
    return found


@dataclass
class Masker:
    """Replaces secrets and ``::add-mask::`` values with ``***`` (each line of a multi-line one)."""

    values: set[str] = field(default_factory=set)

    def add(self, value: str) -> None:
        """Mask ``value`` from now on."""
        for part in [value, *value.splitlines()]:
            if part.strip():
                self.values.add(part.strip())

    def __call__(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, "***")
        return text


def check_inputs(where: str, declared: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Inputs as the called workflow sees them: typed, defaulted, required ones present."""
    values: dict[str, Any] = {}
    for name in given:
        if name not in declared:
            raise WorkflowError(f"{where}: unexpected input {name!r}")
    for name, spec in declared.items():
        spec = spec or {}
        kind = spec.get("type", "string")
        if name in given:
            value = given[name]
        elif spec.get("required") and "default" not in spec:
            raise WorkflowError(f"{where}: required input {name!r} not given")
        else:
            value = spec.get("default", False if kind == "boolean" else "")
        if kind == "boolean":
            if isinstance(value, str) and value in ("true", "false"):
                value = value == "true"
            if not isinstance(value, bool):
                raise WorkflowError(f"{where}: input {name!r} must be a boolean, got {value!r}")
        elif kind == "number":
            value = float(value)
        elif kind in ("string", "choice", "environment"):
            if kind == "choice" and value not in (spec.get("options") or []) and value != "":
                raise WorkflowError(f"{where}: input {name!r}: {value!r} is not an option")
            value = to_string(value)
        values[name] = value
    return values
