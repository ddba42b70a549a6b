"""Domain data: where each (domain, split) JSONL lives, and reading it with validation.

Works the same for every checkpoint source: the mini world writes
``results/world/<domain>/<split>.jsonl`` (used when ``domains.<domain>.<split>`` is
null, the default), real studies point ``domains.<domain>.<split>`` at user files. Records follow docs/CONTRACTS.md:
``sample_id`` (str, unique in the file) and ``text`` (str); test records may add
``prompt`` and ``target``.
"""

from __future__ import annotations

import json
from pathlib import Path

from grokpath.config import InputError

SPLITS = ("train", "validation", "test")
# Defaults for domains whose paths / task are null (the schema default): the mini world's
# outputs. Not schema defaults: domain names are the user's keys, so the default is a
# pattern filled in per domain here.
MINI_WORLD_SPLIT = "results/world/{domain}/{split}.jsonl"
MINI_WORLD_TASK = "grokpath_{domain}"
# Why the data stage (grokpath.selection) skips a row it read, in the order the checks run. Every
# manifest counts each of them per domain and split, zeros included (the mini world skips nothing).
SKIP_REASONS = {
    "undecodable": "a JSON-lines line that is not UTF-8 JSON holding an object",
    "missing_id": "no value in the source's id_field",
    "missing_text": "no value in a column the record's format reads",
    "blank_field": "a benchmark or tuning record whose prompt or target field is empty or whitespace",
    "bad_answer": "an answer key or index that names none of the record's choices",
    "empty_text": "text empty or whitespace only",
    "duplicate_text": "text (sha256) already kept",
    "duplicate_id": "source id already kept",
    "too_short": "fewer than data.min_tokens tokens",
    "too_long": "more than data.max_tokens tokens",
}
# the reasons that mean broken input rather than the stage's own choice (dedup, length window):
# their share of the rows read is held to data.max_skipped_fraction
BAD_INPUT_REASONS = ("undecodable", "missing_id", "missing_text", "blank_field", "bad_answer", "empty_text")


class DataError(InputError):
    """A data file or record breaks the contract; the message names file and line."""


def split_path(domains: dict, domain: str, split: str) -> str:
    """Path of a domain's split: ``domains.<domain>.<split>``, or the mini world's file when null."""
    if domain not in domains:
        raise DataError(f"domain '{domain}' is not configured (domains: {sorted(domains)})")
    if split not in SPLITS:
        raise DataError(f"split '{split}' is not one of {SPLITS}")
    return (domains[domain] or {}).get(split) or MINI_WORLD_SPLIT.format(domain=domain, split=split)


def task_name(domains: dict, domain: str) -> str:
    """lm-eval task of a domain: ``domains.<domain>.task``, or the mini world's local task when null."""
    return (domains[domain] or {}).get("task") or MINI_WORLD_TASK.format(domain=domain)


def iter_jsonl(path: Path | str):
    """(line number, object) for each non-blank line; a bad line fails naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file '{path}' does not exist")
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{line_no}: a record must be a JSON object")
            yield line_no, record


def read_split(path: Path | str, require: tuple[str, ...] = ("sample_id", "text")) -> list[dict]:
    """Records of a JSONL file; every record must carry ``require`` as strings, ids unique."""
    records, seen = [], {}
    for line_no, record in iter_jsonl(path):
        for field in require:
            if not isinstance(record.get(field), str):
                raise DataError(f"{path}:{line_no}: field '{field}' missing or not a string")
        if not record["sample_id"]:
            raise DataError(f"{path}:{line_no}: field 'sample_id' is empty")
        if record["sample_id"] in seen:
            raise DataError(
                f"{path}:{line_no}: duplicate sample_id '{record['sample_id']}' (first on line {seen[record['sample_id']]})"
            )
        seen[record["sample_id"]] = line_no
        records.append(record)
    if not records:
        raise DataError(f"data file '{path}' holds no records")
    return records
