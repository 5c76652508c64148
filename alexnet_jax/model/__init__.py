"""The net: the paper's layer tables, the NNX module, the LRN op and pooling, the speed kernels.

No TensorFlow, no data, no devices: what is here runs wherever JAX runs.
"""
