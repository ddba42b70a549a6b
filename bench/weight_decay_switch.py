"""A world that memorizes at one weight decay and generalizes at a larger one: does it grok sooner?

Runs ``bench/mini_world_grokking.py`` (its arguments as they are) with AdamW's weight decay on the
decayed parameter group switched from ``pretrain.weight_decay`` to ``--late-decay`` after
``--switch-step`` optimizer steps (with ``--ramp-steps``: raised linearly over that many steps).
The idea (Omnigrok, arXiv 2210.01117): generalization comes when decay has shrunk the large-init
weights enough, at a rate set by lr x weight decay, while a large decay from the start slows
memorization (bench/README.md). The switch is patched into AdamW for this
probe only; the pretraining code has no such option.

Run (from the repo root):
    .venv/bin/python bench/weight_decay_switch.py --switch-step 200 --late-decay 2.5 -- \
        --out /tmp/wd/W1 --set pretrain.parallel_domains=false --set pretrain.threads=1 --set pretrain.steps=600
"""

from __future__ import annotations

import argparse
import sys

import mini_world_grokking  # bench/ is on sys.path when run as a script
import torch


def switch_weight_decay(switch_step: int, late_decay: float, ramp_steps: int = 0) -> None:
    """After optimizer step ``switch_step``, every AdamW group with weight decay > 0 decays at ``late_decay``
    (reached linearly over ``ramp_steps`` steps from the group's own decay when ramp_steps > 0)."""
    step = torch.optim.AdamW.step
    taken, early = {}, {}

    def patched(self, *args, **kwargs):
        n = taken[id(self)] = taken.get(id(self), 0) + 1
        for i, group in enumerate(self.param_groups):
            base = early.setdefault((id(self), i), group["weight_decay"])
            if base > 0 and n > switch_step:
                share = min(1.0, (n - switch_step) / ramp_steps) if ramp_steps > 0 else 1.0
                group["weight_decay"] = base + share * (late_decay - base)
        return step(self, *args, **kwargs)

    torch.optim.AdamW.step = patched


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switch-step", type=int, required=True)
    parser.add_argument("--late-decay", type=float, required=True)
    parser.add_argument("--ramp-steps", type=int, default=0)
    args, rest = parser.parse_known_args()
    switch_weight_decay(args.switch_step, args.late_decay, args.ramp_steps)
    sys.argv = [sys.argv[0], *[a for a in rest if a != "--"]]
    mini_world_grokking.main()
