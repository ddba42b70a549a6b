"""Word-level tokenizer for the closed vocabulary of the mini world.

Words are split on single spaces (Metaspace), and every word carries a leading "▁",
the first word of a text too (``prepend_scheme="first"``): a number or name is one
token wherever it stands, so math's first operand shares its embedding with the
second operand and with every other domain's use of that number. (With "never" the
first word was a separate, unprefixed token: ``17`` as math's first operand and
``▁17`` everywhere else, two embeddings for one number.) "\\n" is its own token, and
the post-processor prepends BOS. Decoding turns "▁" back into spaces and drops the
first one, so ``decode(encode(t)) == t`` exactly for every corpus text (texts use
single spaces only).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
SPACE = "▁"


def _pre_tokenizer():
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", "isolated"), pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="first")]
    )


def build_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` whose vocabulary is every word piece of ``texts``."""
    pre = _pre_tokenizer()
    words = sorted({piece for text in texts for piece, _ in pre.pre_tokenize_str(text)})
    if SPACE in words:
        raise ValueError("mini world texts must not contain double spaces (they would not round-trip)")
    vocab = {tok: i for i, tok in enumerate(list(SPECIAL.values()) + words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL["unk_token"]))
    core.pre_tokenizer = pre
    core.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="first")
    bos = SPECIAL["bos_token"]
    core.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
    )
    return PreTrainedTokenizerFast(tokenizer_object=core, padding_side="right", **SPECIAL)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: Path | str) -> None:
    tokenizer.save_pretrained(str(out_dir))
