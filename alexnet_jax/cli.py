"""What main.py hands off to: one function per --mode."""

from __future__ import annotations

import sys

from alexnet_jax import model as model_lib


def run(config, *, mode: str, workdir: str | None, argv: list[str]) -> None:
  model_lib.validate(config.model)
  if mode == 'summary':
    from alexnet_jax import summary
    print(summary.summarize(config.model, config.batch_size))
    return
  if workdir is None:
    sys.exit(f'--mode={mode} needs --workdir=DIR (where checkpoints and metrics go).')
  raise SystemExit(f'--mode={mode} is not available yet in this version.')
