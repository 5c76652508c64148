"""The project's XLA:CPU defaults, added to XLA_FLAGS when the package is imported.

XLA reads XLA_FLAGS once, when JAX starts its backend: importing `alexnet_jax` before the first
JAX computation (as main.py, the tests and the benchmarks do) is what makes these apply. They
only ever add: a flag the user already set in XLA_FLAGS is left as the user set it, and
`ALEXNET_JAX_XLA_DEFAULTS=0` turns them all off. No JAX import here.

Kept because it measurably helps this net (bench/RESULTS.md); every other XLA:CPU option of the
installed jaxlib that was tried did not, and is not set.

- `--xla_cpu_experimental_ynn_fusion_type=individual_dot`: matmuls through YNNPACK (the
  default), convolutions through XLA's own (Eigen) kernels instead of YNNPACK's, which run
  conv1 forward + backward 1.6x (full width) to 5x (quarter width) slower. The train step:
  1.03x faster on the paper net, 1.4x on the quickstart net (with conv1 as a plain convolution,
  `conv1_impl='auto'`). A CPU option: other backends ignore it.

XLA stops the process on a flag it does not know, so the defaults are only added for the
jaxlib releases they were measured with (`MEASURED_JAXLIB`); with any other, nothing is added.
"""

from __future__ import annotations

import importlib.metadata
import os

# flag name -> value
DEFAULTS = {'xla_cpu_experimental_ynn_fusion_type': 'individual_dot'}
MEASURED_JAXLIB = ('0.10.',)
SWITCH = 'ALEXNET_JAX_XLA_DEFAULTS'


def _jaxlib_version() -> str | None:
  try:
    return importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return None


def with_defaults(xla_flags: str, jaxlib_version: str | None) -> str:
  """`xla_flags` with every default the user did not set appended (if this jaxlib has them)."""
  if jaxlib_version is None or not jaxlib_version.startswith(MEASURED_JAXLIB):
    return xla_flags
  given = {part.lstrip('-').split('=', 1)[0] for part in xla_flags.split()}
  added = [f'--{name}={value}' for name, value in DEFAULTS.items() if name not in given]
  return ' '.join([xla_flags.strip()] + added).strip()


def apply() -> None:
  """Adds the defaults to os.environ['XLA_FLAGS'] (see the module docstring)."""
  if os.environ.get(SWITCH, '1') == '0':
    return
  flags = os.environ.get('XLA_FLAGS', '')
  new = with_defaults(flags, _jaxlib_version())
  if new != flags:
    os.environ['XLA_FLAGS'] = new
