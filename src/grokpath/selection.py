"""Data stage of a real study: each domain's train, validation and test files, and the tuning sets.

Every file is drawn from one dataset (``data.domains.<d>.<split>``, ``data.tuning.sets.<set>``;
the fields are described in the schema's ``$defs/data_source``) through ``datasets.load_dataset(...,
streaming=True)``:

- ``data.source: hub`` streams the hub dataset (its revision is resolved to a commit first, and that
  commit is read and recorded);
- ``data.source: local`` reads files with the same columns under ``data.local_dir`` with the json or
  parquet builder, through the same code (tests and the stand-in study run this way).

Per row, in order: ``rename`` columns, apply the keyword ``filter``, format the record (the
benchmark's own fields are kept for test sets), drop exact duplicates (sha256 of ``text``), skip a
row whose source id was already kept (ids come from columns such as ``url`` that nothing makes
unique), cut it into token windows when the source sets ``windows`` (book-length documents), then
keep the record when its length in tokens of ``data.tokenizer`` (special tokens added, as the
traces tokenize) lies in [min_tokens, max_tokens] (for the ``window_splits``), until ``n`` records
are kept. Train and validation sources are read through a seeded shuffle buffer; test sets in order.

Nothing read is lost: a row is a record or a skip under one reason of ``grokpath.data.SKIP_REASONS``
(an unreadable JSON-lines line, a missing id or text, a blank prompt or target, an answer naming no
choice, empty text, a duplicate, the length window), counted per reason in the manifest metadata
and logged with its first example. Broken input beyond ``data.max_skipped_fraction`` of a source's
rows stops the job with one line naming the file and the commonest reason.

Windows (``windows.max_per_document``): a document of ``N`` tokens holds ``N // w`` full windows of
``w = max_tokens −`` (the tokenizer's special tokens) tokens (one window, the whole text, when it is
shorter); at most ``max_per_document`` of them are kept, spread evenly over the document, so ``n``
samples come from at least ``n / max_per_document`` documents. A window's text is the exact character
span of its tokens; re-tokenized alone it may come out longer, and then loses tokens at its end until
it fits ``max_tokens``. Its record id is ``<document id>@<token offset>``, and the manifest carries the
document id and offset.

Outputs (docs/CONTRACTS.md, "Data stage"): ``<domain>/{train,validation,test_unfiltered}.jsonl`` and a
manifest part per domain or tuning set, gathered into ``results/data/manifest.parquet``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from grokpath.data import BAD_INPUT_REASONS, SKIP_REASONS, DataError
from grokpath.io import atomic_path, file_sha256, write_parquet

log = logging.getLogger(__name__)

# split -> file the select step writes (the test file is filtered later by the contamination step)
SPLIT_FILES = {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test_unfiltered.jsonl"}
SHUFFLED_SPLITS = ("train", "validation")
LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".gz": "json", ".parquet": "parquet"}
SAVED_MARKERS = ("state.json", "dataset_dict.json")  # a datasets save_to_disk directory
TUNING_DOMAIN = "tuning"  # manifest rows of tuning sets: domain "tuning", split = the set's name
TOKENIZE_CHUNK = 64
EARLY_CHECK_ROWS = 1000  # a stream whose first this many rows are all bad input stops there
JSON_BLOCK_BYTES = 64 << 20  # pyarrow's JSON block: longer than any one line (book-length documents)
FORMATS = ("text", "math", "humaneval", "csqa", "mmlu", "instruction")
MANIFEST_SCHEMA = pa.schema(
    [
        ("domain", pa.string()),
        ("split", pa.string()),
        ("sample_id", pa.string()),
        ("source_dataset", pa.string()),
        ("source_config", pa.string()),
        ("source_split", pa.string()),
        ("source_revision", pa.string()),
        ("source_row_id", pa.string()),
        ("source_offset", pa.int32()),
        ("text_sha256", pa.string()),
        ("n_tokens", pa.int32()),
    ]
)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- records
class Skipped(Exception):
    """A row the stage skips: ``reason`` (a key of ``grokpath.data.SKIP_REASONS``) and what is wrong with it."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _column(row: dict, name: str):
    if name not in row:
        raise Skipped("missing_text", f"has no column '{name}' (columns: {sorted(row)})")
    if row[name] is None:
        raise Skipped("missing_text", f"has no value in column '{name}'")
    return row[name]


def _filled(value, name: str) -> str:
    """``value`` as text; a prompt or target that is empty or whitespace is skipped (``blank_field``)."""
    text = str(value)
    if not text.strip():
        raise Skipped("blank_field", f"column '{name}' is empty or whitespace")
    return text


def _lookup(row: dict, dotted: str):
    """Value at a dotted path (``metadata.title``); a JSON-string column is parsed on the way."""
    value = row
    for part in dotted.split("."):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return None
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def keyword_hits(row: dict, flt: dict) -> int:
    """Non-overlapping occurrences of the filter's keywords, summed over its fields."""
    total = 0
    for field in flt.get("fields") or ["text"]:
        value = _lookup(row, field)
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if not flt.get("case_sensitive", False):
            text = text.lower()
        for keyword in flt["keywords"]:
            total += text.count(keyword if flt.get("case_sensitive", False) else keyword.lower())
    return total


def format_record(fmt: str, row: dict, spec: dict, label: str) -> dict:
    """One record (without sample_id): ``text`` plus the fields the format keeps.

    Raises :class:`Skipped` for a row the format cannot use: a column it reads without a value
    (``missing_text``), a blank prompt or target (``blank_field``), an answer naming no choice
    (``bad_answer``), a text that is empty or whitespace (``empty_text``).
    """
    col = partial(_column, row)
    if fmt == "text":
        fields = spec.get("text_fields") or ["text"]
        parts = [row.get(f) for f in fields]
        if all(p is None for p in parts):  # one field missing among several joins as ""
            _column(row, fields[0])
        text = "\n".join("" if p is None else str(p) for p in parts)
        if not text.strip():
            raise Skipped("empty_text", "text is empty or whitespace")
        return {"text": text}
    if fmt == "math":
        rec = {k: str(col(k)) for k in ("level", "type")}
        rec = {"problem": _filled(col("problem"), "problem"), "solution": _filled(col("solution"), "solution"), **rec}
        return {**rec, "text": rec["problem"] + "\n" + rec["solution"]}
    if fmt == "humaneval":
        rec = {k: str(col(k)) for k in ("task_id", "prompt", "canonical_solution", "entry_point", "test")}
        for k in ("prompt", "canonical_solution"):
            _filled(rec[k], k)
        return {**rec, "text": rec["prompt"] + rec["canonical_solution"]}
    if fmt == "csqa":
        choices = col("choices")
        if (
            not isinstance(choices, dict)
            or not isinstance(choices.get("label"), list)
            or not isinstance(choices.get("text"), list)
        ):
            raise Skipped("bad_answer", "'choices' does not hold 'label' and 'text' lists")
        labels, texts = [str(x) for x in choices["label"]], [str(x) for x in choices["text"]]
        key = str(col("answerKey"))
        if key not in labels or labels.index(key) >= len(texts):
            raise Skipped("bad_answer", f"answerKey '{key}' is not one of the choice labels {labels}")
        rec = {
            "id": str(col("id")),
            "question": _filled(col("question"), "question"),
            "question_concept": str(col("question_concept")),
            "choices": {"label": labels, "text": texts},
            "answerKey": key,
        }
        return {**rec, "text": rec["question"] + " " + _filled(texts[labels.index(key)], f"choices.text[{key}]")}
    if fmt == "mmlu":
        choices = col("choices")
        if not isinstance(choices, list):
            raise Skipped("bad_answer", f"'choices' is {type(choices).__name__}, not a list")
        choices = [str(c) for c in choices]
        try:
            answer = int(col("answer"))
        except (TypeError, ValueError):
            raise Skipped("bad_answer", f"answer {row['answer']!r} is not an index") from None
        if not 0 <= answer < len(choices):
            raise Skipped("bad_answer", f"answer {answer} is out of range for {len(choices)} choices")
        rec = {
            "question": _filled(col("question"), "question"),
            "subject": str(col("subject")),
            "choices": choices,
            "answer": answer,
        }
        return {**rec, "text": rec["question"] + " " + _filled(choices[answer], f"choices[{answer}]")}
    if fmt == "instruction":
        rec = {
            "instruction": _filled(col("instruction"), "instruction"),
            "input": str(row.get("input") or ""),
            "output": _filled(col("output"), "output"),
        }
        prompt = rec["instruction"] + ("\n" + rec["input"] if rec["input"] else "")
        return {**rec, "text": prompt + "\n" + rec["output"]}
    raise DataError(f"{label}: format '{fmt}' is not one of text, math, humaneval, csqa, mmlu, instruction")


# ---------------------------------------------------------------- sources
def _configs(spec: dict) -> list[str | None]:
    name = spec.get("name")
    return list(name) if isinstance(name, list) else [name]


def _local_file(data: dict, stem: str, label: str) -> Path:
    local_dir = data.get("local_dir")
    if not local_dir:
        raise DataError(f"{label}: data.source is 'local' but data.local_dir is not set")
    base = Path(local_dir) / stem
    if base.suffix in LOCAL_SUFFIXES and base.is_file():
        return base
    if base.is_dir() and any((base / marker).is_file() for marker in SAVED_MARKERS):
        return base
    for suffix in (".jsonl", ".parquet", ".json", ".jsonl.gz"):
        candidate = base.with_name(base.name + suffix)
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{label}: local file '{base}' (.jsonl, .parquet or a save_to_disk directory) does not exist in data.local_dir"
    )


def _saved_dataset(path: Path, split: str, label: str):
    """A ``save_to_disk`` directory as an IterableDataset (a DatasetDict gives its ``split``), features kept."""
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise DataError(f"{label}: saved dataset '{path}' has no split '{split}' (splits: {sorted(ds)})")
        ds = ds[split]
    return ds.to_iterable_dataset()


def _local_revision(path: Path) -> str:
    """``sha256:`` + 16 hex digits of the file, or of a saved dataset's files (name and bytes, sorted)."""
    if path.is_file():
        return "sha256:" + file_sha256(path)[:16]
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0" + bytes.fromhex(file_sha256(file)))
    return "sha256:" + digest.hexdigest()[:16]


def _builder(path: Path) -> str:
    for suffix in reversed(path.suffixes):
        if suffix in LOCAL_SUFFIXES:
            return LOCAL_SUFFIXES[suffix]
    raise DataError(f"local data file '{path}' is neither JSON lines nor Parquet")


def resolve_revision(spec: dict, label: str) -> str | None:
    """Commit SHA of a hub dataset at ``spec.revision`` (None for builder paths reading URLs)."""
    if spec.get("data_files"):
        return None
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(spec["path"], revision=spec.get("revision")).sha
    except Exception as err:  # noqa: BLE001 - the hub client raises several types (network, gated, not found)
        hint = " (gated dataset: accept its terms on the hub and set HF_TOKEN)" if spec.get("gated") else ""
        raise DataError(
            f"{label}: cannot resolve hub dataset '{spec['path']}' at revision '{spec.get('revision') or 'main'}'{hint}: {err}"
        ) from None


@dataclass
class Stream:
    """One file (local) or config (hub) of a source: its rows as an IterableDataset, where they come from,
    and the JSON-lines lines that could not be read (skipped as ``undecodable``)."""

    config: str | None
    revision: str
    ds: object
    file: str
    undecodable: list[int] = dataclasses.field(default_factory=list)
    scratch: tempfile.TemporaryDirectory | None = None  # the readable lines of a file pyarrow refused


def _json_lines(path: Path) -> bool:
    """Whether a JSON file holds JSON lines: a ``.jsonl`` name, or a first line that is a JSON object on its own
    (a ``.json`` file may also be one JSON document, which the json builder reads whole)."""
    if ".jsonl" in path.suffixes:
        return True
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
        first = fh.readline(1 << 20)
    try:
        return isinstance(json.loads(first.decode("utf-8", errors="replace")), dict)
    except json.JSONDecodeError:
        return False


def _jsonl_readable(path: Path) -> bool:
    """Whether pyarrow, the json builder's reader, reads every line of a JSON-lines file as UTF-8 JSON.

    pyarrow's JSON reader does not validate UTF-8 in strings (datasets then fails decoding them);
    ``RecordBatch.validate(full=True)`` does.
    """
    import pyarrow.json as paj

    try:
        for batch in paj.open_json(path, read_options=paj.ReadOptions(block_size=JSON_BLOCK_BYTES)):
            batch.validate(full=True)
    except (pa.ArrowException, OSError):
        return False
    return True


def _readable_lines(path: Path, out: Path) -> list[int]:
    """Copy the lines of a JSON-lines file that are UTF-8 JSON objects to ``out``; the numbers of the others."""
    bad = []
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as src, open(out, "wb") as dst:
        for line_no, raw in enumerate(src, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if not isinstance(record, dict):
                bad.append(line_no)
                continue
            dst.write(raw.rstrip(b"\r\n") + b"\n")
    return bad


def _local_stream(path: Path, config: str | None, split: str, label: str) -> Stream:
    from datasets import load_dataset

    revision = _local_revision(path)
    if path.is_dir():
        return Stream(config, revision, _saved_dataset(path, split, label), str(path))
    builder = _builder(path)
    if builder == "json" and _json_lines(path) and not _jsonl_readable(path):
        # pyarrow refuses the file: read it line by line, keep the readable lines, count the rest
        scratch = tempfile.TemporaryDirectory(prefix="grokpath-jsonl-")
        readable = Path(scratch.name) / "readable.jsonl"
        bad = _readable_lines(path, readable)
        ds = load_dataset("json", data_files=str(readable), split="train", streaming=True)
        return Stream(config, revision, ds, str(path), bad, scratch)
    return Stream(config, revision, load_dataset(builder, data_files=str(path), split="train", streaming=True), str(path))


def open_streams(data: dict, spec: dict, local_stem: str, label: str) -> list[Stream]:
    """A :class:`Stream` per config of a source, the same way for hub and local."""
    from datasets import load_dataset

    source = data["source"]
    streams = []
    if source == "hub":
        revision = resolve_revision(spec, label)
        for config in _configs(spec):
            kwargs = {"split": spec.get("split") or "train", "streaming": True}
            if config:
                kwargs["name"] = config
            if revision:
                kwargs["revision"] = revision
            for key in ("data_files", "data_dir"):
                if spec.get(key):
                    kwargs[key] = spec[key]
            try:
                ds = load_dataset(spec["path"], **kwargs)
            except Exception as err:  # noqa: BLE001 - datasets raises many types; name the source
                hint = " (gated dataset: accept its terms on the hub and set HF_TOKEN)" if spec.get("gated") else ""
                raise DataError(
                    f"{label}: cannot open '{spec['path']}' config {config!r} split '{kwargs['split']}'{hint}: {err}"
                ) from None
            name = spec["path"] + (f" config {config}" if config else "") + f" split {kwargs['split']}"
            streams.append(Stream(config, revision or "url", ds, name))
    elif source == "local":
        configs = _configs(spec)
        for config in configs:
            if spec.get("local"):
                stem = spec["local"]
            else:
                stem = f"{local_stem}/{config}" if len(configs) > 1 else local_stem
            streams.append(_local_stream(_local_file(data, stem, label), config, spec.get("split") or "train", label))
    else:
        raise DataError(f"data.source '{source}' has no data stage (one of hub, local)")
    return streams


def check_source(data: dict, spec: dict, local_stem: str, label: str) -> None:
    """Fail before any reading on a source whose format is unset or whose local file is missing."""
    if spec.get("format") not in FORMATS:
        raise DataError(f"{label}.format is {spec.get('format')!r}, not one of {', '.join(FORMATS)}")
    if not spec.get("path"):
        raise DataError(f"{label}.path is not set (a hub dataset id, or json/parquet with data_files)")
    if data["source"] == "local":
        configs = _configs(spec)
        for config in configs:
            stem = spec.get("local") or (f"{local_stem}/{config}" if len(configs) > 1 else local_stem)
            _local_file(data, stem, label)


@dataclass
class SourceRow:
    """A row read from a source: renamed, with its id, or the reason it is skipped (then ``row`` may be None)."""

    row: dict | None
    row_id: str | None
    config: str | None
    revision: str
    file: str
    skip: Skipped | None = None


def iter_rows(data: dict, spec: dict, local_stem: str, label: str, shuffle: bool) -> Iterator[SourceRow]:
    """Every row of every config of a source in reading order, renamed; unreadable lines and rows
    without an id come as skips. A stream that fails mid-way stops with one line naming its file."""
    rename = spec.get("rename") or {}
    id_field = spec.get("id_field")
    multi = len(_configs(spec)) > 1
    for stream in open_streams(data, spec, local_stem, label):
        for line_no in stream.undecodable:
            skip = Skipped("undecodable", "is not UTF-8 JSON holding an object")
            yield SourceRow(None, f"line {line_no}", stream.config, stream.revision, stream.file, skip)
        ds = stream.ds
        if shuffle:
            buffer = spec.get("shuffle_buffer") or data["shuffle_buffer"]
            ds = ds.shuffle(seed=int(data["seed"]), buffer_size=int(buffer))
        rows, position = iter(ds), 0
        while True:
            try:
                row = next(rows)
            except StopIteration:
                break
            except Exception as err:  # noqa: BLE001 - datasets / pyarrow raise many types; name the file
                raise DataError(
                    f"{label}: cannot read '{stream.file}' after {position} rows: {type(err).__name__}: {err}"
                ) from None
            row = {rename.get(k, k): v for k, v in row.items()}
            skip = None
            if id_field:
                value = row.get(id_field)
                row_id = f"#{position}" if value is None or str(value) == "" else str(value)
                if value is None or str(value) == "":
                    what = "has no column" if id_field not in row else "has no value in column"
                    skip = Skipped("missing_id", f"{what} '{id_field}' (the source's id_field)")
            elif shuffle:
                row_id = None  # filled from the text hash once the record is formatted
            else:
                row_id = f"{stream.config}/{position}" if multi else str(position)
            position += 1
            yield SourceRow(row, row_id, stream.config, stream.revision, stream.file, skip)
        if stream.scratch is not None:
            stream.scratch.cleanup()


# ---------------------------------------------------------------- selection
def load_length_tokenizer(data: dict):
    """The tokenizer that measures the length window: a local directory or a hub repo at a revision."""
    tok = data.get("tokenizer") or {}
    if tok.get("path"):
        from grokpath.checkpoints import load_tokenizer

        return load_tokenizer(tok["path"])
    from transformers import AutoTokenizer

    try:
        # A tokenizer only measures lengths here: never run a repository's code for it.
        return AutoTokenizer.from_pretrained(tok["repo_id"], revision=tok.get("revision") or "main", trust_remote_code=False)
    except Exception as err:  # noqa: BLE001 - network, missing revision: name the tokenizer
        raise DataError(f"data.tokenizer: cannot load '{tok['repo_id']}' at revision '{tok.get('revision')}': {err}") from None


def token_lengths(tokenizer, texts: list[str]) -> list[int]:
    """Length of each text in tokens as the traces tokenize it (special tokens added): the length window's measure."""
    texts = list(texts)
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]] if texts else []


def document_windows(text: str, tokenizer, max_tokens: int, max_per_document: int) -> list[tuple[int, str, int]]:
    """(token offset, text span, length) of a document's windows, at most ``max_per_document``, spread evenly;
    the whole text as one window when it is shorter than one.

    A window is ``max_tokens`` minus the tokenizer's special tokens of the document's own tokens.
    Re-tokenized alone it can come out longer (a byte-level BPE token such as ``Ġword`` is
    ``word`` at the start of a text, which may split): such a window loses as many tokens at its
    end as it is over, until its length, measured as the traces measure it, is at most ``max_tokens``.
    """
    spans = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    length = max_tokens - tokenizer.num_special_tokens_to_add()
    if length < 1:
        raise DataError(f"data.max_tokens {max_tokens} leaves no room beside the tokenizer's special tokens")
    n_full = len(spans) // length
    if n_full == 0:
        return [(0, text, token_lengths(tokenizer, [text])[0])]
    picks = range(n_full) if n_full <= max_per_document else [i * n_full // max_per_document for i in range(max_per_document)]
    bounds = {k: (k * length, k * length + length) for k in picks}  # token range [start, end) in the document
    windows = {}
    while bounds:
        texts = {k: text[spans[a][0] : spans[b - 1][1]] for k, (a, b) in bounds.items()}
        for (k, (a, b)), n in zip(list(bounds.items()), token_lengths(tokenizer, list(texts.values()))):
            if n <= max_tokens or b - a == 1:
                windows[k] = (a, texts[k], n)
                del bounds[k]
            else:
                bounds[k] = (a, max(a + 1, b - (n - max_tokens)))
    return [windows[k] for k in picks]


def select_source(
    data: dict,
    spec: dict,
    *,
    domain: str,
    split: str,
    n: int | None,
    tokenizer,
    local_stem: str,
    label: str,
    sample_prefix: str,
    window: bool,
    shuffle: bool,
) -> tuple[list[dict], list[dict], dict]:
    """Records, manifest rows and counts for one source.

    Every row read is kept or skipped under a reason of ``grokpath.data.SKIP_REASONS``. Counts:
    ``read`` rows, ``filtered`` (keyword filter), one count per skip reason (zeros included),
    ``kept`` and ``beyond_n`` (read in the last tokenized batch after ``n`` records were kept);
    with ``windows``, ``documents`` (documents cut) and ``windows`` (windows made; the length and
    duplicate checks then count windows). Each reason is logged once with its first example.
    The broken-input reasons (``BAD_INPUT_REASONS``) may skip at most ``data.max_skipped_fraction``
    of the rows read, else one line names the file and the commonest reason.
    """
    check_source(data, spec, local_stem, label)
    fmt = spec["format"]
    flt = spec.get("filter")
    windows = spec.get("windows")
    lo, hi = int(data["min_tokens"]), int(data["max_tokens"])
    max_bad = float(data["max_skipped_fraction"])
    counts = {"read": 0, "filtered": 0, **dict.fromkeys(SKIP_REASONS, 0), "kept": 0, "beyond_n": 0}
    if windows:
        counts.update(documents=0, windows=0)
        if not getattr(tokenizer, "is_fast", False):
            raise DataError(f"{label}.windows needs a fast tokenizer (character offsets); data.tokenizer is not one")
    examples: dict[str, str] = {}  # reason -> its first row and what is wrong with it
    bad_by_file: Counter = Counter()
    records, manifest, seen_sha, seen_ids, pending = [], [], set(), set(), []

    def skip(reason: str, row_id: str | None, file: str, detail: str) -> None:
        counts[reason] += 1
        examples.setdefault(reason, f"row {row_id} {detail}" + ("" if reason in BAD_INPUT_REASONS else f" ({file})"))
        if reason in BAD_INPUT_REASONS:
            bad_by_file[file] += 1

    def flush() -> None:
        unmeasured = [i for i, (_, _, n_tok, _) in enumerate(pending) if n_tok is None]
        for i, n_tok in zip(unmeasured, token_lengths(tokenizer, [pending[i][0]["text"] for i in unmeasured])):
            pending[i] = (*pending[i][:2], n_tok, pending[i][3])
        for record, meta, n_tok, file in pending:
            if n is not None and counts["kept"] >= n:
                counts["beyond_n"] += 1
                continue
            if window and n_tok < lo:
                skip("too_short", meta["sample_id"], file, f"has {n_tok} tokens (data.min_tokens {lo})")
                continue
            if window and n_tok > hi:
                skip("too_long", meta["sample_id"], file, f"has {n_tok} tokens (data.max_tokens {hi})")
                continue
            counts["kept"] += 1
            records.append(record)
            manifest.append({**meta, "n_tokens": n_tok})
            progress.update(1)
        pending.clear()

    def check_bad(final: bool) -> None:
        bad = sum(counts[r] for r in BAD_INPUT_REASONS)
        # early: a stream whose first rows are all broken (a column that no row has) stops before it is read through
        if bad and (bad / counts["read"] > max_bad if final else bad == counts["read"] >= EARLY_CHECK_ROWS):
            reason = max(BAD_INPUT_REASONS, key=lambda r: counts[r])
            raise DataError(
                f"{label}: '{bad_by_file.most_common(1)[0][0]}': {bad} of {counts['read']} rows read skipped as bad input "
                f"({bad / counts['read']:.1%} > data.max_skipped_fraction {max_bad}); commonest: {reason} "
                f"({counts[reason]}), e.g. {examples[reason]}"
            )

    progress = tqdm(total=n, desc=label, unit="sample", mininterval=2.0)
    for item in iter_rows(data, spec, local_stem, label, shuffle):
        counts["read"] += 1
        row_id, file = item.row_id, item.file
        if item.skip is None and flt and keyword_hits(item.row, flt) < int(flt.get("min_hits", 1)):
            counts["filtered"] += 1
            continue
        try:
            if item.skip is not None:
                raise item.skip
            record = format_record(fmt, item.row, spec, label)
        except Skipped as skipped:
            skip(skipped.reason, row_id or f"#{counts['read'] - 1}", file, skipped.detail)
            check_bad(final=False)
            continue
        sha = text_sha256(record["text"])
        if sha in seen_sha:
            skip("duplicate_text", row_id or sha[:16], file, "repeats a kept text")
            continue
        seen_sha.add(sha)
        row_id = row_id if row_id is not None else sha[:16]
        if row_id in seen_ids:
            skip("duplicate_id", row_id, file, f"repeats a kept id (column {spec.get('id_field')})")
            continue
        seen_ids.add(row_id)
        if windows:
            pieces = document_windows(record["text"], tokenizer, hi, int(windows["max_per_document"]))
            counts["documents"] += 1
            counts["windows"] += len(pieces)
        else:
            pieces = [(None, record["text"], None)]
        for offset, text, n_tok in pieces:
            piece_sha = sha if offset is None else text_sha256(text)
            piece_id = row_id if offset is None else f"{row_id}@{offset}"
            if offset is not None and piece_sha in seen_sha and len(pieces) > 1:
                skip("duplicate_text", piece_id, file, "repeats a kept window")
                continue
            seen_sha.add(piece_sha)
            piece = {"sample_id": f"{sample_prefix}-{piece_id}", **record, "text": text}
            meta = {
                "domain": domain,
                "split": split,
                "sample_id": piece["sample_id"],
                "source_dataset": spec["path"],
                "source_config": item.config,
                "source_split": spec.get("split") or "train",
                "source_revision": item.revision,
                "source_row_id": row_id,
                "source_offset": offset,
                "text_sha256": piece_sha,
            }
            pending.append((piece, meta, n_tok, file))
        if len(pending) >= TOKENIZE_CHUNK or windows:  # windows: no document is cut beyond need
            flush()
        if n is not None and counts["kept"] >= n:
            break
    if pending:
        flush()
    progress.close()
    log.info("%s: %s", label, counts)
    for reason, example in examples.items():
        level = logging.WARNING if reason in BAD_INPUT_REASONS else logging.INFO
        log.log(level, "%s: skipped %d as %s (%s), e.g. %s", label, counts[reason], reason, SKIP_REASONS[reason], example)
    if counts["read"]:
        check_bad(final=True)
    if not records:
        raise DataError(f"{label}: no record survived the selection ({counts}); check the source, filter and length window")
    if n is not None and counts["kept"] < n:
        log.warning("%s: only %d of %d samples found (%s)", label, counts["kept"], n, counts)
    return records, manifest, counts


def skipped_counts(counts: dict) -> dict:
    """The skip reasons of one source's counts, every reason present."""
    return {reason: int(counts.get(reason, 0)) for reason in SKIP_REASONS}


def write_jsonl(records: list[dict], path: Path | str) -> None:
    with atomic_path(path, ".jsonl") as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def _manifest_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


def _split_n(data: dict, split: str) -> int | None:
    return {"train": data["n_train"], "validation": data["n_validation"], "test": data["n_test"]}[split]


def select_domain(cfg: dict, domain: str, out_dir: Path | str, manifest_out: Path | str, tokenizer=None) -> dict:
    """Write ``<out_dir>/{train,validation,test_unfiltered}.jsonl`` of one domain and its manifest part."""
    data = cfg["data"]
    specs = (data.get("domains") or {}).get(domain)
    if not specs:
        raise DataError(f"data.domains.{domain} is not configured (configured: {sorted(data.get('domains') or {})})")
    for split in SPLIT_FILES:  # every source checked before the first one is read
        if split not in specs:
            raise DataError(f"data.domains.{domain}.{split} is not configured")
        check_source(data, specs[split], f"{domain}/{split}", f"data.domains.{domain}.{split}")
    tokenizer = tokenizer or load_length_tokenizer(data)
    out_dir, rows, stats = Path(out_dir), [], {}
    for split, filename in SPLIT_FILES.items():
        records, manifest, counts = select_source(
            data,
            specs[split],
            domain=domain,
            split=split.replace("test", "test_unfiltered"),
            n=_split_n(data, split),
            tokenizer=tokenizer,
            local_stem=f"{domain}/{split}",
            label=f"data.domains.{domain}.{split}",
            sample_prefix=f"{domain}-{split}",
            window=split in data["window_splits"],
            shuffle=split in SHUFFLED_SPLITS,
        )
        write_jsonl(records, out_dir / filename)
        rows += manifest
        stats[split] = counts
    skipped = {domain: {split: skipped_counts(counts) for split, counts in stats.items()}}
    write_parquet(_manifest_table(rows), manifest_out, metadata={"counts": {domain: stats}, "skipped": skipped})
    return stats


def select_tuning(cfg: dict, name: str, out: Path | str, manifest_out: Path | str, tokenizer=None) -> dict:
    """Write the tuning set ``name`` as JSONL (sample_id, text, instruction, input, output) and its manifest part."""
    data = cfg["data"]
    tuning = data.get("tuning") or {}
    spec = (tuning.get("sets") or {}).get(name)
    if not spec:
        raise DataError(f"data.tuning.sets.{name} is not configured (configured: {sorted(tuning.get('sets') or {})})")
    if spec.get("format") != "instruction":
        raise DataError(f"data.tuning.sets.{name}.format must be 'instruction', got {spec.get('format')!r}")
    tokenizer = tokenizer or load_length_tokenizer(data)
    n = tuning.get("n")
    records, manifest, counts = select_source(
        data,
        spec,
        domain=TUNING_DOMAIN,
        split=name,
        n=n,
        tokenizer=tokenizer,
        local_stem=f"tuning/{name}",
        label=f"data.tuning.sets.{name}",
        sample_prefix=f"tuning-{name}",
        window=False,
        shuffle=n is not None,
    )
    write_jsonl(records, out)
    key = f"{TUNING_DOMAIN}/{name}"
    metadata = {"counts": {key: counts}, "skipped": {key: skipped_counts(counts)}}
    write_parquet(_manifest_table(manifest), manifest_out, metadata=metadata)
    return counts


def gather_manifest(parts: list[Path | str], out: Path | str) -> None:
    """Concatenate manifest parts (domains, then tuning sets) into one Parquet, counts and skips merged in metadata."""
    from grokpath.io import read_metadata

    tables, counts, skipped = [], {}, {}
    for part in parts:
        tables.append(pq.read_table(part).cast(MANIFEST_SCHEMA))
        counts.update(read_metadata(part).get("counts") or {})
        skipped.update(read_metadata(part).get("skipped") or {})
    table = pa.concat_tables(tables) if tables else _manifest_table([])
    ids = table.column("domain").to_pylist(), table.column("split").to_pylist(), table.column("sample_id").to_pylist()
    keys = list(zip(*ids))
    if len(set(keys)) != len(keys):
        raise DataError(f"manifest parts {list(map(str, parts))} repeat a (domain, split, sample_id)")
    write_parquet(table.replace_schema_metadata(None), out, metadata={"counts": counts, "skipped": skipped})
