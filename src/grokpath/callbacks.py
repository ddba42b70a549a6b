"""The pathway monitor inside other training loops.

:class:`PathwayMonitorCallback` is a ``transformers.TrainerCallback``: it records the monitor's
rows (``grokpath.monitor.COLUMNS``) at every checkpoint save (``on_save``, after the Trainer has
written ``checkpoint-<step>``), or every ``every_n_steps`` optimizer steps instead, and each time
rewrites ``<out_dir>/monitor.parquet`` and the monitor figure ``<out_dir>/monitor.png`` (+ PDF),
both atomically. Only the main process records (``state.is_world_process_zero``).

Usage::

    callback = PathwayMonitorCallback({"math": math_texts, "code": code_texts}, tokenizer, "runs/monitor")
    Trainer(model=model, args=args, train_dataset=train, callbacks=[callback]).train()

OLMo-core (its ``Callback`` with ``pre_train`` / ``post_checkpoint_saved``) is not wrapped yet:
the same :class:`grokpath.monitor.PathwayMonitor` would be called from ``post_checkpoint_saved``
with the trainer's step, once the model is a transformers model with a router adapter or
``router`` names its router path.
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
