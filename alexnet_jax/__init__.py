"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) in JAX/Flax NNX."""

from alexnet_jax import xla_flags as _xla_flags

# Before JAX starts its backend (XLA reads XLA_FLAGS once): the project's XLA:CPU defaults.
_xla_flags.apply()
