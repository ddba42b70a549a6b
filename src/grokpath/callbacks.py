"""The pathway monitor inside other training loops.

:class:`PathwayMonitorCallback` is a ``transformers.TrainerCallback``: it records the monitor's
rows (``grokpath.monitor.COLUMNS``) at every checkpoint save (``on_save``, after the Trainer has
written ``checkpoint-<step>``), or every ``every_n_steps`` optimizer steps instead, and each time
rewrites ``<out_dir>/monitor.parquet`` and the monitor figure ``<out_dir>/monitor.png`` (+ PDF),
both atomically. Only the main process records (``state.is_world_process_zero``).

Usage::

    callback = PathwayMonitorCallback({"math": math_texts, "code": code_texts}, tokenizer, "runs/monitor")
    Trainer(model=model, args=args, train_dataset=train, callbacks=[callback]).train()

``OLMoCorePathwayMonitorCallback`` (needs the extra ``grokpath[olmo-core]``; importing it without
OLMo-core is a one-line error) is the same monitor inside OLMo-core's ``Trainer``: an OLMo-core
``Callback`` (``olmo_core/train/callbacks/callback.py``) that records at ``post_checkpoint_saved``
(or every ``every_n_steps`` at ``post_step``) with the trainer's ``global_step``, reading the
native routers through :class:`grokpath.olmo_core.OLMoCoreCausalLM`. The probe forward runs on
rank 0 only, so the model must not be sharded (one GPU, or replicated data parallel): FSDP and
expert parallelism would need every rank in that forward. It has not run on a GPU yet;
``bench/olmo_core_callback.py`` is its check (OLMo-core's MoE forward needs Triton kernels).

Usage::

    from grokpath.callbacks import OLMoCorePathwayMonitorCallback

    trainer_config.with_callback("pathway_monitor", OLMoCorePathwayMonitorCallback(probes, tokenizer, "runs/monitor"))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from transformers import TrainerCallback

from grokpath.io import write_frame
from grokpath.monitor import ROUTER_SETTING, PathwayMonitor, check_settings, tokenize_probes
from grokpath.routing import check_model


class PathwayMonitorCallback(TrainerCallback):
    """Record the pathway monitor at every save (or every ``every_n_steps``) of a ``transformers.Trainer``.

    ``probes``: domain -> texts, or one list of texts; ``settings``: as for
    :class:`~grokpath.monitor.PathwayMonitor` (threshold, routing_normalization, router, ...);
    ``figure``: also write ``monitor.png``/``.pdf``; ``model``: the model the Trainer will train.

    Checked when built: the settings and the probes (with ``tokenizer``) here, the model here when
    given and otherwise at ``on_train_begin``; an architecture grokpath cannot read, a model
    without an MoE layer or probes the tokenizer cannot encode stop the run before its first step.
    """

    def __init__(
        self,
        probes: Mapping[str, Sequence[str]] | Sequence[str],
        tokenizer,
        out_dir: Path | str,
        every_n_steps: int | None = None,
        figure: bool = True,
        model=None,
        **settings,
    ):
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive integer or None, got {every_n_steps}")
        resolved = check_settings(settings)
        tokenize_probes(probes, tokenizer, resolved["max_length"])
        if model is not None:
            check_model(model, resolved["router"], ROUTER_SETTING)
        self.probes, self.tokenizer, self.settings = probes, tokenizer, settings
        self.out_dir, self.every_n_steps, self.figure = Path(out_dir), every_n_steps, figure
        self.monitor: PathwayMonitor | None = None

    @property
    def path(self) -> Path:
        return self.out_dir / "monitor.parquet"

    def _record(self, state, model) -> None:
        if not state.is_world_process_zero or model is None:
            return
        if self.monitor is None:
            self.monitor = PathwayMonitor(model, self.probes, self.tokenizer, **self.settings)
        if any(row["step"] == state.global_step for row in self.monitor.rows):
            return  # a save and a step hook at the same step: one record
        self.monitor.record(state.global_step, model)
        frame = self.monitor.frame()
        write_frame(frame, self.path)
        if self.figure:
            from grokpath.figures.common import save_figure
            from grokpath.figures.monitor import monitor_figure

            save_figure(monitor_figure(frame), self.out_dir / "monitor.png")

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and self.monitor is None:
            self.monitor = PathwayMonitor(model, self.probes, self.tokenizer, **self.settings)

    def on_save(self, args, state, control, model=None, **kwargs):
        if self.every_n_steps is None:
            self._record(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_n_steps is not None and state.global_step % self.every_n_steps == 0:
            self._record(state, model)


def _write_monitor(frame, out_dir: Path, figure: bool) -> None:
    """``<out_dir>/monitor.parquet`` and, with ``figure``, ``monitor.png``/``.pdf``, atomically."""
    write_frame(frame, out_dir / "monitor.parquet")
    if figure:
        from grokpath.figures.common import save_figure
        from grokpath.figures.monitor import monitor_figure

        save_figure(monitor_figure(frame), out_dir / "monitor.png")


def _olmo_core_callback_class():
    """The OLMo-core callback class, defined on first use (its base class comes from OLMo-core)."""
    from olmo_core.distributed.utils import get_rank
    from olmo_core.train.callbacks import Callback

    from grokpath.olmo_core import OLMoCoreCausalLM

    class OLMoCorePathwayMonitorCallback(Callback):
        """Record the pathway monitor at every checkpoint save (or every ``every_n_steps``) of OLMo-core's Trainer.

        Arguments as :class:`PathwayMonitorCallback`: ``probes`` (domain -> texts, or one list),
        an HF ``tokenizer`` (right padding), ``out_dir``, ``every_n_steps``, ``figure`` and the
        monitor's ``settings``. Its rows are trainer state (``state_dict``), so a resumed run keeps them.
        """

        def __init__(
            self,
            probes: Mapping[str, Sequence[str]] | Sequence[str],
            tokenizer,
            out_dir: Path | str,
            every_n_steps: int | None = None,
            figure: bool = True,
            **settings,
        ):
            if every_n_steps is not None and every_n_steps < 1:
                raise ValueError(f"every_n_steps must be a positive integer or None, got {every_n_steps}")
            self.probes, self.tokenizer, self.settings = probes, tokenizer, settings
            self.out_dir, self.every_n_steps, self.figure = Path(out_dir), every_n_steps, figure
            self.monitor: PathwayMonitor | None = None
            self._rows: list[dict] = []

        @property
        def path(self) -> Path:
            return self.out_dir / "monitor.parquet"

        def _record(self) -> None:
            if get_rank() != 0:
                return
            model = OLMoCoreCausalLM(self.trainer.train_module.model)
            if self.monitor is None:
                self.monitor = PathwayMonitor(model, self.probes, self.tokenizer, **self.settings)
                self.monitor.rows = list(self._rows)
            if any(row["step"] == self.step for row in self.monitor.rows):
                return  # a save and a step hook at the same step: one record
            self.monitor.record(self.step, model)
            self._rows = self.monitor.rows
            _write_monitor(self.monitor.frame(), self.out_dir, self.figure)

        def post_checkpoint_saved(self, path) -> None:
            if self.every_n_steps is None:
                self._record()

        def post_step(self) -> None:
            if self.every_n_steps is not None and self.step % self.every_n_steps == 0:
                self._record()

        def state_dict(self) -> dict:
            return {"rows": list(self.monitor.rows if self.monitor is not None else self._rows)}

        def load_state_dict(self, state_dict: dict) -> None:
            self._rows = list(state_dict.get("rows") or [])
            if self.monitor is not None:
                self.monitor.rows = list(self._rows)

    OLMoCorePathwayMonitorCallback.__qualname__ = "OLMoCorePathwayMonitorCallback"
    return OLMoCorePathwayMonitorCallback


def __getattr__(name: str):
    # OLMoCorePathwayMonitorCallback exists only where OLMo-core is installed (grokpath[olmo-core]).
    if name == "OLMoCorePathwayMonitorCallback":
        from grokpath.olmo_core import require_olmo_core

        require_olmo_core()
        cls = _olmo_core_callback_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
