"""Prompt, answer extraction and scoring of the benchmark tasks (grokpath_minerva_math,
grokpath_humaneval_plus), taken from lm-eval's own task code so that scores match the
built-in tasks. Task YAMLs here reference these names with ``!function``.

- MATH: lm-eval's ``minerva_math`` utils (prompt, 4-shot exemplars, and its ``process_results``
  itself: ``exact_match`` on the extracted, normalized final answer; ``math_verify`` on the whole
  generation against the gold solution, as lm-eval computes both).
- HumanEval+: lm-eval's ``humaneval`` prompt and program assembly (prompt + completion,
  then test + ``check(entry_point)``); pass@1 runs in ``grokpath.sandbox``, never through
  HF ``evaluate``'s ``code_eval``. lm-eval's ``humaneval/utils.py`` cannot be imported
  offline (it loads ``code_eval`` from the hub at import), so its one-line
  ``build_predictions`` is restated here.
"""

from __future__ import annotations

import json
import math
import os

from lm_eval.tasks.minerva_math import utils as minerva

from grokpath.sandbox import SETTINGS_ENV as CODE_EXECUTION_ENV  # set by grokpath.evaluation
from grokpath.sandbox import run_program

# ---------------------------------------------------------------- MATH (minerva)
minerva_doc_to_text = minerva.doc_to_text
minerva_process_docs = minerva.process_docs
minerva_fewshot_samples = minerva.list_fewshot_samples


# lm-eval's own scoring, on the raw generation (no filter: math_verify parses the whole text)
minerva_process_results = minerva.process_results


# ---------------------------------------------------------------- HumanEval+
def humaneval_build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Filter: prompt + completion (lm-eval humaneval ``build_predictions``)."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs)]


def humaneval_program(doc: dict, prediction: str) -> str:
    """The program pass@1 runs: prediction, the benchmark's tests, ``check(entry_point)``."""
    return f"{prediction}\n{doc['test']}\ncheck({doc['entry_point']})\n"


def code_execution_settings() -> dict:
    return json.loads(os.environ.get(CODE_EXECUTION_ENV) or '{"allow": false}')


def humaneval_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """pass@1 of one greedy sample: 1.0 if the program passes in the sandbox; NaN when code
    execution is off (evaluation.allow_code_execution: false)."""
    settings = code_execution_settings()
    if not settings.get("allow"):
        return {"pass@1": math.nan}
    limits = {k: settings[k] for k in ("timeout_s", "memory_mb", "cpu_s") if k in settings}
    result = run_program(humaneval_program(doc, results[0]), **limits)
    return {"pass@1": float(result.passed)}
