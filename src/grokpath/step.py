"""Run one library function as a workflow step: the rule's names are the function's arguments.

A rule names its function in ``params.call`` (``"grokpath.traces:run_traces"``) and runs
``workflow/scripts/step.py``. Every wildcard, named input, named output and param whose name
is a parameter of that function is passed to it, and the job's ``threads`` when it takes
``threads``; the rule's other names only tell Snakemake the DAG. Values are converted to the
parameter's annotation (``Path``, ``int``, ``float``, lists and dicts of them), so a rule
reads as the call's argument table and nothing restates it.

Exit status: 0 done; 2 the user's input is wrong (config, data, checkpoint, device: one line
naming it); 1 a bug (the traceback goes to the job's log).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from grokpath.config import InputError

log = logging.getLogger("grokpath")


def setup_logging(log_path: str | Path | None) -> None:
    """Log to stderr (the terminal, or the SLURM job's output) and append to ``log_path``."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def run_logged(action: Callable[[], object], what: str) -> int:
    """Run ``action`` with grokpath's exit-status policy; ``what`` names it in a bug's log line."""
    try:
        action()
    except (InputError, FileNotFoundError) as err:
        log.error("%s", err)  # the user's input: one line that names the key, file or revision
        return 2
    except Exception:
        log.exception("%s failed", what)  # a bug: keep the traceback
        return 1
    return 0


def resolve(call: str) -> Callable:
    """``"package.module:function"`` -> the function."""
    module, sep, name = call.partition(":")
    if not sep:
        raise ValueError(f"params.call must be 'module:function', got '{call}'")
    return getattr(importlib.import_module(module), name)


def _convert(hint: Any, value: Any) -> Any:
    """``value`` (a string or list from Snakemake) as the annotated type, where that is unambiguous."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) == 1:
            return _convert(kinds[0], value)
        return list(value) if isinstance(value, list) else value  # e.g. Path | str: the function decides
    if origin in (list, tuple, Sequence):
        items = [value] if isinstance(value, str | Path) else list(value)
        return [_convert(args[0] if args else Any, v) for v in items]
    if origin in (dict, Mapping):
        return {k: _convert(args[1] if args else Any, v) for k, v in dict(value).items()}
    if hint is Path:
        return Path(value)
    if hint in (int, float) and isinstance(value, str):
        return hint(value)
    if isinstance(value, list):  # a Snakemake Namedlist
        return list(value)
    return value


def step_arguments(fn: Callable, names: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``fn`` that ``names`` provides, converted to their annotations."""
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    kwargs = {
        name: _convert(hints.get(name, Any), names[name])
        for name, param in signature.parameters.items()
        if name in names and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    }
    missing = [
        name
        for name, param in signature.parameters.items()
        if param.default is param.empty and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and name not in kwargs
    ]
    if missing:
        raise TypeError(
            f"{fn.__module__}.{fn.__qualname__} needs {', '.join(missing)}: name them as a wildcard, input, output or param of the rule"
        )
    return kwargs


def describe_call(fn: Callable, kwargs: Mapping[str, Any]) -> str:
    """The call as one line for the log; a config dict shows its section names only."""

    def show(name: str, value: Any) -> str:
        if name == "cfg" and isinstance(value, dict):
            return f"<config sections {', '.join(sorted(value))}>"
        if isinstance(value, dict) and len(repr(value)) > 200:
            return f"<dict with keys {', '.join(map(str, value))}>"
        return repr(value)

    return f"{fn.__module__}.{fn.__qualname__}(" + ", ".join(f"{k}={show(k, v)}" for k, v in kwargs.items()) + ")"


def run_step(call: str, names: Mapping[str, Any], log_path: str | Path | None = None) -> int:
    """Call ``call`` with the arguments ``names`` provides; the exit status as described above."""
    setup_logging(log_path)

    def action() -> None:
        fn = resolve(call)
        kwargs = step_arguments(fn, names)
        log.info("%s", describe_call(fn, kwargs))
        fn(**kwargs)

    return run_logged(action, call)


def snakemake_names(smk: Any) -> dict[str, Any]:
    """A Snakemake job's wildcards, named inputs, outputs and params, and its threads, as one namespace."""
    names: dict[str, Any] = {}
    for part in ("wildcards", "input", "output", "params"):
        for name, value in getattr(smk, part).items():
            if name in names:
                raise ValueError(
                    f"rule {smk.rule}: '{name}' is named twice (wildcards, input, output, params share one namespace)"
                )
            names[name] = value
    names["threads"] = smk.threads
    return names


def run_snakemake_job(smk: Any) -> int:
    """Entry of ``workflow/scripts/step.py``: run the rule's ``params.call`` with its names."""
    return run_step(smk.params.call, snakemake_names(smk), smk.log[0] if smk.log else None)
