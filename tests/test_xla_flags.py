"""The project's XLA:CPU defaults: added, never overriding the user, only where measured."""

import os

import jax
import jax.numpy as jnp
import pytest

from alexnet_jax import xla_flags

FLAG = 'xla_cpu_experimental_ynn_fusion_type'


def test_defaults_are_added_after_the_users_flags():
  got = xla_flags.with_defaults('--xla_force_host_platform_device_count=4', '0.10.2')
  assert got == '--xla_force_host_platform_device_count=4 --' + FLAG + '=individual_dot'
  assert xla_flags.with_defaults('', '0.10.2') == '--' + FLAG + '=individual_dot'


def test_a_flag_the_user_set_is_left_alone():
  for given in (f'--{FLAG}=', f'--{FLAG}=individual_convolution,individual_dot', f'-{FLAG}=x'):
    assert xla_flags.with_defaults(given, '0.10.2') == given


def test_nothing_is_added_for_an_unmeasured_jaxlib():
  # XLA stops the process on a flag it does not know: only releases measured get the defaults.
  assert xla_flags.with_defaults('--a=1', '0.11.0') == '--a=1'
  assert xla_flags.with_defaults('--a=1', None) == '--a=1'


def test_convolutions_run_on_xla_and_matmuls_on_ynnpack_in_this_process():
  """The defaults reached the backend: importing alexnet_jax (the tests' conftest does) set
  them before JAX started, so a compiled convolution is XLA's own and a matmul YNNPACK's."""
  if (jax.default_backend() != 'cpu' or os.environ.get(xla_flags.SWITCH) == '0'
      or xla_flags.with_defaults('', xla_flags._jaxlib_version()) == ''):
    pytest.skip('the defaults apply to the CPU backend of the measured jaxlib only')
  x = jax.ShapeDtypeStruct((2, 32, 32, 64), jnp.float32)  # large enough for YNNPACK to take
  conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
  dot = jax.jit(jnp.dot)
  kernel = jax.ShapeDtypeStruct((3, 3, 64, 64), jnp.float32)
  assert '__ynn_fusion' not in conv.lower(x, kernel).compile().as_text()
  assert '__ynn_fusion' in dot.lower(jnp.ones((64, 64)), jnp.ones((64, 64))).compile().as_text()
