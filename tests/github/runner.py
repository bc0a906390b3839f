"""A GitHub-hosted runner for tests: runs a workflow's jobs, step by step, on this machine.

``Runner.call`` runs a reusable workflow as ``workflow_call`` would (inputs checked
against their declarations, defaults and types applied, required secrets enforced);
``Runner.run`` runs a caller workflow whose jobs ``uses:`` the reusable ones. Every
``run:`` step is a real ``bash --noprofile --norc -eo pipefail`` process with the
variables and files a runner gives it (``GITHUB_OUTPUT``, ``GITHUB_ENV``, ``GITHUB_PATH``,
``GITHUB_STEP_SUMMARY``, ``RUNNER_TEMP``, ...); ``${{ }}`` goes through the evaluator in
:mod:`tests.github.expressions`. The log of each step is captured with every secret and
every ``::add-mask::`` value replaced by ``***``, as GitHub shows it.

``uses:`` is limited to the local equivalents declared in :data:`ACTIONS` (checkout is a
copy of the workspace folder, setup-python puts the test's venv on PATH, upload-artifact
copies to a folder), the repository's
own composite action and its own reusable workflows; anything else is refused with the
step's name, so a new action cannot slip in without an equivalent and a test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .expressions import (
    ExpressionError,
    condition,
    evaluate,
    interpolate,
    to_string,
    truthy,
)
from .workflow_files import (
    LEVELS,
    Job,
    Masker,
    Run,
    Step,
    WorkflowError,
    check_inputs,
    grants,
    load,
    parse_file_command,
)

ROOT = Path(__file__).resolve().parents[2]
SELF = "OWNER/releaser"  # how the docs' caller examples name this repository
STEP_TIMEOUT = 600


@dataclass
class Release:
    """This checkout's wheel, standing in for the commit a caller pins (see ``Runner.call``)."""

    version: str
    sha256: str
    folder: Path  # a find-links folder holding the wheel


# A local equivalent for each pinned third-party action the workflows use; the pin is
# part of the key, so bumping one in a workflow needs a deliberate change here.
ActionFn = Callable[["_JobState", dict[str, Any]], None]
ACTIONS: dict[str, ActionFn] = {}


def _action(ref: str) -> Callable[[ActionFn], ActionFn]:
    def register(fn: ActionFn) -> ActionFn:
        ACTIONS[ref] = fn
        return fn

    return register


@_action("actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1")
def _checkout(job: _JobState, with_: dict[str, Any]) -> None:
    if with_.get("persist-credentials") is not False:
        raise WorkflowError("checkout without persist-credentials: false")
    ws = job.workspace
    if ws.exists():
        shutil.rmtree(ws)
    shutil.copytree(job.runner.checkout, ws, symlinks=True)


@_action("actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97")
def _setup_python(job: _JobState, with_: dict[str, Any]) -> None:
    if not with_.get("python-version"):
        raise WorkflowError("setup-python without python-version")
    job.path.insert(0, str(job.runner.python_bin))


@_action("actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f")
def _upload_artifact(job: _JobState, with_: dict[str, Any]) -> None:
    """A copy of ``path`` (a file or a folder in the workspace) to ``<work>/artifacts/<name>``;
    a path that is not there fails the step only with ``if-no-files-found: error``, as the
    action does (it warns by default)."""
    name, source = with_.get("name") or "artifact", with_.get("path")
    if not source:
        raise WorkflowError("upload-artifact without path")
    found = job.workspace / str(source)
    if not found.exists():
        if with_.get("if-no-files-found") == "error":
            raise WorkflowError(f"upload-artifact: no files at {source}")
        return
    dest = job.runner.work / "artifacts" / str(name)
    dest.mkdir(parents=True, exist_ok=True)
    if found.is_dir():
        shutil.copytree(found, dest / found.name, dirs_exist_ok=True)
    else:
        shutil.copy2(found, dest / found.name)


@dataclass
class _JobState:
    runner: Runner
    job_id: str
    workspace: Path
    temp: Path
    masker: Masker
    contexts: dict[str, Any]
    path: list[str] = field(default_factory=list)
    env_file: dict[str, str] = field(default_factory=dict)
    failed: bool = False
    summary: str = ""


class Runner:
    """Runs workflows from this repository against a workspace folder (the checked-out repo).

    ``checkout`` is the folder actions/checkout copies into the job's workspace;
    ``python_bin`` the bin folder of the venv setup-python puts on PATH; ``github`` the
    ``github`` context (repository, ref, sha, event_name, event, token, ...); ``env``
    extra runner variables (GITHUB_API_URL of a local stand-in, ...).
    """

    def __init__(
        self,
        *,
        checkout: Path,
        python_bin: Path,
        work: Path,
        github: dict[str, Any],
        release: Release | None = None,
        env: Mapping[str, str] | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        self.checkout, self.python_bin, self.work = checkout, python_bin, work
        self.github, self.release = github, release
        self.env, self.vars = dict(env or {}), dict(variables or {})
        self._jobs = 0

    # --- workflows ------------------------------------------------------------------------

    def call(
        self,
        workflow: Path | str,
        inputs: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> Run:
        """Run a reusable workflow as ``workflow_call`` does.

        The pinned install: the reusable workflows install the commit the caller pinned
        (from the job's OIDC token) or a released wheel checked against its SHA-256. The
        runner stands in for the first with the second: given no ``releaser-version``, it
        passes this checkout's wheel (version and hash) through the workflow's own inputs,
        and pip finds it in a local folder. The step itself runs unchanged.
        """
        path = workflow if isinstance(workflow, Path) else ROOT / workflow
        doc = load(path)
        call = (doc.get("on") or {}).get("workflow_call")
        if not isinstance(call, dict):
            raise WorkflowError(f"{path.name} is not a reusable workflow")
        given = dict(inputs or {})
        if self.release is not None and not given.get("releaser-version"):
            given.update(
                {"releaser-version": self.release.version, "releaser-sha256": self.release.sha256}
            )
        values = check_inputs(path.name, call.get("inputs") or {}, given)
        declared = call.get("secrets") or {}
        sec = {k: v for k, v in (secrets or {}).items() if v != ""}
        for name in sec:
            if name not in declared:
                raise WorkflowError(f"{path.name}: secret {name} is not defined in the workflow")
        for name, spec in declared.items():
            if (spec or {}).get("required") and name not in sec:
                raise WorkflowError(f"{path.name}: required secret {name} not given")
        run = self._jobs_of(doc, {"inputs": values, "secrets": sec})
        outs = call.get("outputs") or {}
        ctx = {
            "jobs": {j.id: {"result": j.result, "outputs": j.outputs} for j in run.jobs.values()}
        }
        run.outputs = {k: to_string(self._eval(v["value"], ctx, {})) for k, v in outs.items()}
        return run

    def run(
        self,
        workflow: Path | str,
        secrets: Mapping[str, str] | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> Run:
        """Run a caller workflow (a file or its text) for the event in ``github``."""
        doc = load(workflow)
        triggers = doc.get("on")
        event = self.github["event_name"]
        names = set(triggers) if isinstance(triggers, dict | list) else {triggers}
        if event not in names:
            raise WorkflowError(f"the workflow does not run on {event}")
        declared = {}
        if event in ("workflow_dispatch",) and isinstance(triggers, dict):
            declared = (triggers.get(event) or {}).get("inputs") or {}
        values = check_inputs("workflow_dispatch", declared, dict(inputs or {}))
        return self._jobs_of(doc, {"inputs": values, "secrets": dict(secrets or {})})

    def _jobs_of(self, doc: dict[str, Any], base: dict[str, Any]) -> Run:
        secrets: dict[str, str] = base["secrets"]
        top_env = doc.get("env") or {}
        ctx = {"github": self.github, "inputs": base["inputs"], "vars": self.vars}
        run = Run(
            concurrency=to_string(
                self._eval((doc.get("concurrency") or {}).get("group", ""), ctx, {})
            )
        )
        top_permissions = grants(doc.get("permissions", "read-all"))
        pending = dict(doc["jobs"])
        while pending:
            ready = [k for k, j in pending.items() if all(n in run.jobs for n in _needs(j))]
            if not ready:
                raise WorkflowError(f"jobs wait on each other: {sorted(pending)}")
            for job_id in ready:
                spec = pending.pop(job_id)
                needs = {
                    n: {"result": run.jobs[n].result, "outputs": run.jobs[n].outputs}
                    for n in _needs(spec)
                }
                failed = any(n["result"] != "success" for n in needs.values())
                status = {
                    "success": not failed,
                    "failure": failed,
                    "always": True,
                    "cancelled": False,
                }
                jctx = {**ctx, "needs": needs}
                if not truthy(self._cond(spec.get("if", "success()"), jctx, status)):
                    run.jobs[job_id] = Job(job_id, "skipped")
                    continue
                perms = grants(spec["permissions"]) if "permissions" in spec else top_permissions
                with_ = {
                    k: self._eval(v, {**jctx, "secrets": secrets}, status)
                    for k, v in (spec.get("with") or {}).items()
                }
                if "uses" in spec:
                    run.jobs[job_id] = self._call_job(
                        job_id, spec, with_, {**jctx, "secrets": secrets}, perms
                    )
                else:
                    run.jobs[job_id] = self._job(
                        job_id, spec, {**jctx, "secrets": secrets}, top_env
                    )
        return run

    def _call_job(
        self,
        job_id: str,
        spec: dict[str, Any],
        with_: dict[str, Any],
        ctx: dict[str, Any],
        perms: dict[str, int],
    ) -> Job:
        uses = str(spec["uses"])
        path = self._reusable(uses)
        passed = spec.get("secrets") or {}
        if passed == "inherit":
            sec = dict(ctx["secrets"])
        else:
            sec = {k: to_string(self._eval(v, ctx, {})) for k, v in passed.items()}
        for called_id, called in load(path)["jobs"].items():
            for scope, level in grants(called.get("permissions", {})).items():
                if perms.get(scope, 0) < level:
                    raise WorkflowError(
                        f"job {job_id}: {path.name} job {called_id} needs {scope}: "
                        f"{[k for k, v in LEVELS.items() if v == level][0]}, the caller grants less"
                    )
        called_run = self.call(path, with_, sec)
        failed = any(j.result == "failure" for j in called_run.jobs.values())
        return Job(
            job_id, "failure" if failed else "success", called_run.outputs, called=called_run
        )

    def _reusable(self, uses: str) -> Path:
        for prefix in (f"{SELF}/.github/workflows/", "./.github/workflows/"):
            if uses.startswith(prefix):
                name = uses[len(prefix) :].split("@")[0]
                path = ROOT / ".github" / "workflows" / name
                if path.exists():
                    return path
        raise WorkflowError(f"uses {uses!r}: not one of this repository's reusable workflows")

    # --- one job --------------------------------------------------------------------------

    def _job(
        self,
        job_id: str,
        spec: dict[str, Any],
        ctx: dict[str, Any],
        top_env: dict[str, Any],
    ) -> Job:
        self._jobs += 1
        home = self.work / f"job{self._jobs}-{job_id}"
        state = _JobState(self, job_id, home / "workspace", home / "temp", Masker(), ctx)
        state.temp.mkdir(parents=True)
        state.workspace.mkdir()
        (home / "home").mkdir()
        for value in ctx["secrets"].values():
            state.masker.add(value)
        token = self.github.get("token", "")
        if token:
            state.masker.add(token)
        status = {"success": True, "failure": False, "always": True, "cancelled": False}
        env: dict[str, Any] = {}
        for level in (top_env, spec.get("env") or {}):
            for k, v in level.items():
                env[k] = to_string(self._eval(v, {**ctx, "env": env}, status))
        environment = spec.get("environment")
        if isinstance(environment, dict):
            environment = environment.get("name")
        job = Job(job_id, "success")
        if environment is not None:
            job.environment = to_string(self._eval(environment, ctx, status))
        self._eval(spec.get("name", ""), ctx, status)
        defaults = (spec.get("defaults") or {}).get("run") or {}
        steps_ctx: dict[str, Any] = {}
        for i, step in enumerate(spec.get("steps") or []):
            result = self._step(state, step, i, env, steps_ctx, defaults, home)
            job.steps.append(result)
        job.result = "failure" if state.failed else "success"
        job.raw_summary = state.summary
        job.summary = state.masker(state.summary)
        sctx = {**ctx, "steps": steps_ctx, "env": env}
        for name, expr in (spec.get("outputs") or {}).items():
            value = to_string(self._eval(expr, sctx, status))
            if state.masker(value) == value:  # GitHub drops an output that holds a secret
                job.outputs[name] = value
        return job

    def _step(
        self,
        state: _JobState,
        step: dict[str, Any],
        index: int,
        job_env: dict[str, Any],
        steps_ctx: dict[str, Any],
        defaults: dict[str, Any],
        home: Path,
        action_path: Path | None = None,
    ) -> Step:
        name = str(step.get("name") or step.get("uses") or step.get("run", "").split("\n")[0])
        status = {
            "success": not state.failed,
            "failure": state.failed,
            "always": True,
            "cancelled": False,
        }
        ctx = {
            **state.contexts,
            "steps": steps_ctx,
            "env": {**job_env, **state.env_file},
            "runner": {"temp": str(state.temp), "os": "Linux"},
        }
        if action_path is not None:
            ctx["github"] = {**ctx["github"], "action_path": str(action_path)}
        step_id = str(step.get("id") or f"__{index}")
        try:
            run_it = truthy(self._cond(step.get("if", "success()"), ctx, status))
            env = {**ctx["env"]}
            for k, v in (step.get("env") or {}).items():
                env[k] = to_string(self._eval(v, {**ctx, "env": env}, status))
            ctx["env"] = env
            with_ = {k: self._eval(v, ctx, status) for k, v in (step.get("with") or {}).items()}
            name = to_string(self._eval(name, ctx, status))
        except ExpressionError as err:
            raise WorkflowError(f"step {name!r}: {err}") from err
        if not run_it:
            steps_ctx[step_id] = {"outcome": "skipped", "conclusion": "skipped", "outputs": {}}
            return Step(name, "skipped")
        outputs: dict[str, str] = {}
        if "uses" in step:
            ok, log, outputs = self._uses(state, name, str(step["uses"]), with_, env, home)
        else:
            shell = step.get("shell") or defaults.get("shell") or "bash"
            if shell != "bash":
                raise WorkflowError(f"step {name!r}: shell {shell!r} is not modelled (bash only)")
            wd = step.get("working-directory") or defaults.get("working-directory") or "."
            cwd = state.workspace / to_string(self._eval(wd, ctx, status))
            if action_path is not None:
                env["GITHUB_ACTION_PATH"] = str(action_path)
            ok, log, outputs = self._bash(state, str(step["run"]), env, cwd, index)
        outcome = "success" if ok else "failure"
        if not ok and not step.get("continue-on-error"):
            state.failed = True
        steps_ctx[step_id] = {"outcome": outcome, "conclusion": outcome, "outputs": outputs}
        given = frozenset(k for k, v in env.items() if to_string(v))
        return Step(name, outcome, outputs, state.masker(log), log, given)

    def _uses(
        self,
        state: _JobState,
        name: str,
        uses: str,
        with_: dict[str, Any],
        env: dict[str, Any],
        home: Path,
    ) -> tuple[bool, str, dict[str, str]]:
        if uses == "./" or uses.startswith(f"{SELF}@"):
            return self._composite(state, with_, env, home)
        equivalent = ACTIONS.get(uses)
        if equivalent is None:
            raise WorkflowError(f"step {name!r}: uses {uses!r}, which has no local equivalent")
        equivalent(state, with_)
        return True, f"(local equivalent of {uses})\n", {}

    def _composite(
        self, state: _JobState, with_: dict[str, Any], env: dict[str, Any], home: Path
    ) -> tuple[bool, str, dict[str, str]]:
        action = load(ROOT / "action.yml")
        declared = action.get("inputs") or {}
        for k in with_:
            if k not in declared:
                raise WorkflowError(f"action.yml has no input {k!r}")
        inputs = {
            k: to_string(with_.get(k, (v or {}).get("default", ""))) for k, v in declared.items()
        }
        outer = state.contexts
        state.contexts = {"github": outer["github"], "inputs": inputs, "vars": self.vars}
        steps_ctx: dict[str, Any] = {}
        logs = []
        try:
            for i, step in enumerate(action["runs"]["steps"]):
                if "run" in step and "shell" not in step:
                    raise WorkflowError("a composite action's run step must name its shell")
                result = self._step(
                    state, step, 1000 + i, env, steps_ctx, {}, home, action_path=ROOT
                )
                logs.append(result.log)
        finally:
            state.contexts = outer
        outputs = {
            k: to_string(self._eval(v["value"], {**state.contexts, "steps": steps_ctx}, {}))
            for k, v in (action.get("outputs") or {}).items()
        }
        return not state.failed, "".join(logs), outputs

    def _bash(
        self, state: _JobState, script: str, env: dict[str, Any], cwd: Path, index: int
    ) -> tuple[bool, str, dict[str, str]]:
        files = {
            n: state.temp / f"{n.lower()}-{index}"
            for n in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")
        }
        for f in files.values():
            f.write_text("", "utf-8")
        body = state.temp / f"step-{index}.sh"
        body.write_text(script, "utf-8")
        if not cwd.is_dir():
            return False, f"working-directory {cwd.name!r} does not exist\n", {}
        full = {
            **self._base_env(state),
            **{k: to_string(v) for k, v in env.items()},
            **{k: str(v) for k, v in files.items()},
        }
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(body)],
            cwd=cwd,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        for line in done.stdout.splitlines():
            if line.startswith("::add-mask::"):
                state.masker.add(line[len("::add-mask::") :])
        outputs = parse_file_command(files["GITHUB_OUTPUT"].read_text("utf-8"), "GITHUB_OUTPUT")
        state.env_file.update(
            parse_file_command(files["GITHUB_ENV"].read_text("utf-8"), "GITHUB_ENV")
        )
        added = [p for p in files["GITHUB_PATH"].read_text("utf-8").splitlines() if p.strip()]
        state.path[:0] = list(reversed(added))
        state.summary += files["GITHUB_STEP_SUMMARY"].read_text("utf-8")
        log = done.stdout + (
            f"Process completed with exit code {done.returncode}.\n" if done.returncode else ""
        )
        return done.returncode == 0, log, outputs

    def _base_env(self, state: _JobState) -> dict[str, str]:
        system = [
            p
            for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and not (Path(p) / "releaser").exists()
        ]
        event_path = state.temp / "event.json"
        event_path.write_text(json.dumps(self.github.get("event", {})), "utf-8")
        g = self.github
        return {
            "PATH": os.pathsep.join([*state.path, *system]),
            "HOME": str(state.temp.parent / "home"),
            "LANG": "C.UTF-8",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(state.workspace),
            "GITHUB_JOB": state.job_id,
            "GITHUB_REPOSITORY": str(g.get("repository", "")),
            "GITHUB_REF": str(g.get("ref", "")),
            "GITHUB_SHA": str(g.get("sha", "")),
            "GITHUB_EVENT_NAME": str(g.get("event_name", "")),
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_ACTOR": str(g.get("actor", "octocat")),
            "GITHUB_RUN_ID": str(g.get("run_id", "1")),
            "GITHUB_SERVER_URL": str(g.get("server_url", "https://github.com")),
            "GITHUB_API_URL": str(g.get("api_url", "https://api.github.com")),
            "RUNNER_TEMP": str(state.temp),
            "RUNNER_OS": "Linux",
            # pip finds packages only in the release folder (this checkout's wheel and the
            # build backend), never on an index.
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            **(
                {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(self.release.folder)}
                if self.release
                else {}
            ),
            **self.env,
        }

    # --- expressions ----------------------------------------------------------------------

    def _eval(self, value: Any, ctx: Mapping[str, Any], status: Mapping[str, bool]) -> Any:
        if not isinstance(value, str):
            return value
        full = {"github": {}, **ctx}
        return interpolate(
            value,
            full,
            status or {"success": True, "failure": False, "always": True, "cancelled": False},
        )

    def _cond(self, value: Any, ctx: Mapping[str, Any], status: Mapping[str, bool]) -> Any:
        return evaluate(condition(value), ctx, status)


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)
