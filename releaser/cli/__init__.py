"""The ``releaser`` command: the one place errors become messages and exit codes.

Exit codes (documented in docs/reference/output.md):

====  =====================================================
0     success
1     a check ran and failed (gate, verification)
2     bad input or usage (config errors, unknown ids, dirty tree)
3     an external system is unavailable (store, MLflow, DVC remote, GitHub)
4     state conflict (someone else changed the state first; re-run)
70    internal error (a bug in releaser; run with --verbose for the traceback)
130   interrupted (Ctrl-C)
====  =====================================================
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from releaser.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    ReleaserError,
)

__all__ = ["EXIT_INTERNAL", "main"]

EXIT_INTERNAL = 70


def _verbose(argv: Sequence[str]) -> bool:
    return "--verbose" in argv or "-v" in argv or os.environ.get("RELEASER_VERBOSE") == "1"


def _report(exc: ReleaserError, args: Sequence[str] = ()) -> None:
    from dataclasses import asdict

    from releaser.cli.output import emit_json, err

    if "--json" in args:
        # A program that asked for JSON gets JSON on stdout for a failure too (the
        # message and hint go to stderr as always).
        problems = [asdict(p) for p in exc.problems] if isinstance(exc, ConfigError) else []
        emit_json(
            {
                "error": {
                    "message": exc.message,
                    "hint": exc.hint,
                    "exit_code": exc.exit_code,
                    "kind": type(exc).__name__,
                    **({"problems": problems} if problems else {}),
                }
            }
        )
    err(f"error: {exc.message}")
    if exc.hint:
        err(f"hint: {exc.hint}")
    if isinstance(exc, ConfigError):
        from releaser.cli.github import error_annotations

        for line in error_annotations(exc.problems):
            err(line)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI and exit with a documented code."""
    args = list(sys.argv[1:] if argv is None else argv)
    sys.exit(run(args))


def run(args: list[str]) -> int:
    """Run the CLI on ``args`` and return the exit code (no ``sys.exit``)."""
    # pydantic looks for plugins among every installed package the first time a model is
    # built (about 12 ms at start-up, on each command); typer already turns them off for
    # its own adapters. A user who wants plugins to see releaser's validation sets
    # PYDANTIC_DISABLE_PLUGINS to something else.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")
    import typer

    from releaser.cli.app import build_command

    command = build_command(args)
    try:
        result = command.main(args=args, prog_name="releaser", standalone_mode=False)
    except ReleaserError as exc:
        _report(exc, args)
        if _verbose(args):
            import traceback

            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        from releaser.cli.output import err

        err("interrupted")
        return EXIT_INTERRUPTED
    except typer.Abort:
        from releaser.cli.output import err

        err("error: aborted: nothing was changed")
        err("hint: pass --yes to confirm without a prompt (for CI)")
        return EXIT_BAD_INPUT
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            from releaser.cli.output import err

            err(f"error: {exc.format_message()}")
        return int(getattr(exc, "exit_code", EXIT_BAD_INPUT))
    except Exception as exc:
        from releaser.cli.output import err

        if _verbose(args):
            import traceback

            traceback.print_exc()
        else:
            err(f"internal error: {type(exc).__name__}: {exc}")
            err("hint: run again with --verbose for the traceback, and report it as a bug")
        return EXIT_INTERNAL
    return int(result) if isinstance(result, int) else EXIT_OK
