"""Data stage of a real study: each domain's train, validation and test files, and the tuning sets.

Every file is drawn from one dataset (``data.domains.<d>.<split>``, ``data.tuning.sets.<set>``;
the fields are described in the schema's ``$defs/data_source``) through ``datasets.load_dataset(...,
streaming=True)``:

- ``data.source: hub`` streams the hub dataset (its revision is resolved to a commit first, and that
  commit is read and recorded);
- ``data.source: local`` reads files with the same columns under ``data.local_dir`` with the json or
  parquet builder, through the same code (tests and the stand-in study run this way).

Per row, in order: ``rename`` columns, apply the keyword ``filter``, format the record (the
benchmark's own fields are kept for test sets), cut it into token windows when the source sets
``windows`` (book-length documents), drop exact duplicates (sha256 of ``text``), skip a row whose
source id was already kept (counted, never fatal: ids come from columns such as ``url`` that nothing
makes unique), then keep the record when its length in tokens of ``data.tokenizer`` lies in
[min_tokens, max_tokens] (for the ``window_splits``), until ``n`` records are kept. Train and
validation sources are read through a seeded shuffle buffer; test sets in order.

Windows (``windows.max_per_document``): a document of ``N`` tokens holds ``N // max_tokens`` full
windows of ``max_tokens`` tokens (one window, the whole text, when it is shorter); at most
``max_per_document`` of them are kept, spread evenly over the document, so ``n`` samples come from at
least ``n / max_per_document`` documents. A window's text is the exact character span of its tokens;
its record id is ``<document id>@<token offset>``, and the manifest carries the document id and offset.

Outputs (docs/CONTRACTS.md, "Data stage"): ``<domain>/{train,validation,test_unfiltered}.jsonl`` and a
manifest part per domain or tuning set, gathered into ``results/data/manifest.parquet``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from grokpath.data import DataError
from grokpath.io import atomic_path, file_sha256, write_parquet

log = logging.getLogger(__name__)

# split -> file the select step writes (the test file is filtered later by the contamination step)
SPLIT_FILES = {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test_unfiltered.jsonl"}
SHUFFLED_SPLITS = ("train", "validation")
LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".gz": "json", ".parquet": "parquet"}
SAVED_MARKERS = ("state.json", "dataset_dict.json")  # a datasets save_to_disk directory
TUNING_DOMAIN = "tuning"  # manifest rows of tuning sets: domain "tuning", split = the set's name
TOKENIZE_CHUNK = 64
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
def _column(row: dict, name: str, label: str, row_id: str):
    if name not in row:
        raise DataError(f"{label}: row {row_id} has no column '{name}' (columns: {sorted(row)})")
    return row[name]


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


def format_record(fmt: str, row: dict, spec: dict, label: str, row_id: str) -> dict:
    """One record (without sample_id): ``text`` plus the fields the format keeps."""

    def col(name: str):
        return _column(row, name, label, row_id)

    if fmt == "text":
        parts = [col(f) for f in spec.get("text_fields") or ["text"]]
        return {"text": "\n".join("" if p is None else str(p) for p in parts)}
    if fmt == "math":
        rec = {k: str(col(k)) for k in ("problem", "solution", "level", "type")}
        return {**rec, "text": rec["problem"] + "\n" + rec["solution"]}
    if fmt == "humaneval":
        rec = {k: str(col(k)) for k in ("task_id", "prompt", "canonical_solution", "entry_point", "test")}
        return {**rec, "text": rec["prompt"] + rec["canonical_solution"]}
    if fmt == "csqa":
        choices = col("choices")
        if not isinstance(choices, dict) or "label" not in choices or "text" not in choices:
            raise DataError(f"{label}: row {row_id}: 'choices' must hold 'label' and 'text' lists")
        labels, texts = [str(x) for x in choices["label"]], [str(x) for x in choices["text"]]
        key = str(col("answerKey"))
        if key not in labels:
            raise DataError(f"{label}: row {row_id}: answerKey '{key}' is not one of the choice labels {labels}")
        rec = {
            "id": str(col("id")),
            "question": str(col("question")),
            "question_concept": str(col("question_concept")),
            "choices": {"label": labels, "text": texts},
            "answerKey": key,
        }
        return {**rec, "text": rec["question"] + " " + texts[labels.index(key)]}
    if fmt == "mmlu":
        choices = [str(c) for c in col("choices")]
        answer = int(col("answer"))
        if not 0 <= answer < len(choices):
            raise DataError(f"{label}: row {row_id}: answer {answer} is out of range for {len(choices)} choices")
        rec = {"question": str(col("question")), "subject": str(col("subject")), "choices": choices, "answer": answer}
        return {**rec, "text": rec["question"] + " " + choices[answer]}
    if fmt == "instruction":
        rec = {"instruction": str(col("instruction")), "input": str(row.get("input") or ""), "output": str(col("output"))}
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


def open_streams(data: dict, spec: dict, local_stem: str, label: str) -> list[tuple[str | None, str, object]]:
    """(config, revision, IterableDataset) per config of a source, the same way for hub and local."""
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
            streams.append((config, revision or "url", ds))
    elif source == "local":
        configs = _configs(spec)
        for config in configs:
            if spec.get("local"):
                stem = spec["local"]
            else:
                stem = f"{local_stem}/{config}" if len(configs) > 1 else local_stem
            path = _local_file(data, stem, label)
            if path.is_dir():
                ds = _saved_dataset(path, spec.get("split") or "train", label)
            else:
                ds = load_dataset(_builder(path), data_files=str(path), split="train", streaming=True)
            streams.append((config, _local_revision(path), ds))
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


def iter_rows(data: dict, spec: dict, local_stem: str, label: str, shuffle: bool) -> Iterator[tuple[dict, str, str | None, str]]:
    """(row, row_id, config, revision) over every config of a source, renamed, in reading order."""
    rename = spec.get("rename") or {}
    id_field = spec.get("id_field")
    multi = len(_configs(spec)) > 1
    for config, revision, ds in open_streams(data, spec, local_stem, label):
        if shuffle:
            buffer = spec.get("shuffle_buffer") or data["shuffle_buffer"]
            ds = ds.shuffle(seed=int(data["seed"]), buffer_size=int(buffer))
        for position, row in enumerate(ds):
            row = {rename.get(k, k): v for k, v in row.items()}
            if id_field:
                row_id = str(_column(row, id_field, label, f"#{position}"))
            elif shuffle:
                row_id = None  # filled from the text hash once the record is formatted
            else:
                row_id = f"{config}/{position}" if multi else str(position)
            yield row, row_id, config, revision


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


def document_windows(text: str, tokenizer, length: int, max_per_document: int) -> list[tuple[int, str]]:
    """(token offset, text span) of a document's windows of ``length`` tokens, at most
    ``max_per_document``, spread evenly; the whole text as one window when it is shorter."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = enc["offset_mapping"]
    n_full = len(spans) // length
    if n_full == 0:
        return [(0, text)]
    picks = range(n_full) if n_full <= max_per_document else (i * n_full // max_per_document for i in range(max_per_document))
    return [(k * length, text[spans[k * length][0] : spans[k * length + length - 1][1]]) for k in picks]


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

    Counts: ``read`` rows, ``filtered`` (keyword filter), ``duplicates`` (same text sha256),
    ``duplicate_ids`` (a source id already kept), ``too_short`` / ``too_long`` (length window),
    ``kept``; with ``windows``, ``documents`` (documents cut) and ``windows`` (windows made).
    """
    check_source(data, spec, local_stem, label)
    fmt = spec["format"]
    flt = spec.get("filter")
    windows = spec.get("windows")
    lo, hi = int(data["min_tokens"]), int(data["max_tokens"])
    counts = {"read": 0, "filtered": 0, "duplicates": 0, "duplicate_ids": 0, "too_short": 0, "too_long": 0, "kept": 0}
    if windows:
        counts.update(documents=0, windows=0)
        if not getattr(tokenizer, "is_fast", False):
            raise DataError(f"{label}.windows needs a fast tokenizer (character offsets); data.tokenizer is not one")
    records, manifest, seen_sha, seen_ids, pending = [], [], set(), set(), []

    def flush() -> None:
        lengths = [len(ids) for ids in tokenizer([r["text"] for r, _ in pending], add_special_tokens=False)["input_ids"]]
        for (record, meta), n_tok in zip(pending, lengths):
            if n is not None and counts["kept"] >= n:
                break
            if window and n_tok < lo:
                counts["too_short"] += 1
                continue
            if window and n_tok > hi:
                counts["too_long"] += 1
                continue
            counts["kept"] += 1
            records.append(record)
            manifest.append({**meta, "n_tokens": n_tok})
            progress.update(1)
        pending.clear()

    progress = tqdm(total=n, desc=label, unit="sample", mininterval=2.0)
    for row, row_id, config, revision in iter_rows(data, spec, local_stem, label, shuffle):
        counts["read"] += 1
        if flt and keyword_hits(row, flt) < int(flt.get("min_hits", 1)):
            counts["filtered"] += 1
            continue
        record = format_record(fmt, row, spec, label, row_id or f"#{counts['read']}")
        sha = text_sha256(record["text"])
        if sha in seen_sha:
            counts["duplicates"] += 1
            continue
        seen_sha.add(sha)
        row_id = row_id if row_id is not None else sha[:16]
        if row_id in seen_ids:
            counts["duplicate_ids"] += 1
            log.warning("%s: skipped a second row with id '%s' (column %s)", label, row_id, spec.get("id_field"))
            continue
        seen_ids.add(row_id)
        if windows:
            pieces = document_windows(record["text"], tokenizer, hi, int(windows["max_per_document"]))
            counts["documents"] += 1
            counts["windows"] += len(pieces)
        else:
            pieces = [(None, record["text"])]
        for offset, text in pieces:
            piece_sha = sha if offset is None else text_sha256(text)
            if offset is not None and piece_sha in seen_sha and len(pieces) > 1:
                counts["duplicates"] += 1
                continue
            seen_sha.add(piece_sha)
            piece_id = row_id if offset is None else f"{row_id}@{offset}"
            piece = {"sample_id": f"{sample_prefix}-{piece_id}", **record, "text": text}
            meta = {
                "domain": domain,
                "split": split,
                "sample_id": piece["sample_id"],
                "source_dataset": spec["path"],
                "source_config": config,
                "source_split": spec.get("split") or "train",
                "source_revision": revision,
                "source_row_id": row_id,
                "source_offset": offset,
                "text_sha256": piece_sha,
            }
            pending.append((piece, meta))
        if len(pending) >= TOKENIZE_CHUNK or windows:  # windows: no document is cut beyond need
            flush()
        if n is not None and counts["kept"] >= n:
            break
    if pending:
        flush()
    progress.close()
    log.info("%s: %s", label, counts)
    if not records:
        raise DataError(f"{label}: no record survived the selection ({counts}); check the source, filter and length window")
    if n is not None and counts["kept"] < n:
        log.warning("%s: only %d of %d samples found (%s)", label, counts["kept"], n, counts)
    return records, manifest, counts


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
    write_parquet(_manifest_table(rows), manifest_out, metadata={"counts": {domain: stats}})
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
    write_parquet(_manifest_table(manifest), manifest_out, metadata={"counts": {f"{TUNING_DOMAIN}/{name}": counts}})
    return counts


def gather_manifest(parts: list[Path | str], out: Path | str) -> None:
    """Concatenate manifest parts (domains, then tuning sets) into one Parquet, counts merged in metadata."""
    from grokpath.io import read_metadata

    tables, counts = [], {}
    for part in parts:
        tables.append(pq.read_table(part).cast(MANIFEST_SCHEMA))
        counts.update(read_metadata(part).get("counts") or {})
    table = pa.concat_tables(tables) if tables else _manifest_table([])
    ids = table.column("domain").to_pylist(), table.column("split").to_pylist(), table.column("sample_id").to_pylist()
    keys = list(zip(*ids))
    if len(set(keys)) != len(keys):
        raise DataError(f"manifest parts {list(map(str, parts))} repeat a (domain, split, sample_id)")
    write_parquet(table.replace_schema_metadata(None), out, metadata={"counts": counts})
