"""`grokpath` command line: parses arguments and calls one library function.

Every subcommand takes ``--cfg`` (the validated config sections, as JSON, handed
over by the Snakemake rule) and ``--log`` (a file under results/logs/).
Nothing imports this module.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from grokpath.config import ConfigError, from_json

log = logging.getLogger("grokpath")


def setup_logging(log_path: str | None) -> None:
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


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--cfg", default="{}", help="validated config sections as JSON (set by the rule)")
    p.add_argument("--log", default=None, help="log file (results/logs/<rule>/<wildcards>.log)")
    return p


def _add(sub, name: str, help: str) -> argparse.ArgumentParser:
    return _common(sub.add_parser(name, help=help))


# ---------------------------------------------------------------- world + pretrain
def _register_world(sub) -> None:
    p = _add(sub, "world", "generate the mini world corpus and its tokenizer")
    p.add_argument("--out", required=True, type=Path, help="results/world")
    p.add_argument("--tokenizer-out", required=True, type=Path, help="results/tokenizer")
    p.set_defaults(func=_cmd_world)

    p = _add(sub, "pretrain", "pretrain the mini OLMoE and save checkpoints")
    p.add_argument("--world", required=True, type=Path)
    p.add_argument("--tokenizer", required=True, type=Path)
    p.add_argument("--checkpoints", required=True, type=Path, help="results/checkpoints")
    p.add_argument("--loss", required=True, type=Path, help="results/pretrain/loss.parquet")
    p.add_argument("--monitor", type=Path, default=None, help="results/pretrain/monitor.parquet")
    p.set_defaults(func=_cmd_pretrain)


def _cmd_world(args, cfg) -> None:
    from grokpath.world import build_world

    build_world(cfg, out_dir=args.out, tokenizer_dir=args.tokenizer_out)


def _cmd_pretrain(args, cfg) -> None:
    from grokpath.pretrain import pretrain

    pretrain(
        cfg,
        world_dir=args.world,
        tokenizer_dir=args.tokenizer,
        checkpoints_dir=args.checkpoints,
        loss_path=args.loss,
        monitor_path=args.monitor,
    )


# ---------------------------------------------------------------- checkpoints + traces + evaluation
def _register_traces(sub) -> None:
    pass


# ---------------------------------------------------------------- paper A metrics, tables, figures
def _register_paper_a(sub) -> None:
    pass


# ---------------------------------------------------------------- paper B circuits
def _register_circuits(sub) -> None:
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grokpath", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _register_world(sub)
    _register_traces(sub)
    _register_paper_a(sub)
    _register_circuits(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    try:
        cfg = from_json(args.cfg)
        args.func(args, cfg)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
