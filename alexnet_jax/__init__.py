"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) in JAX/Flax NNX."""
