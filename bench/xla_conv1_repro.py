"""A minimal reproduction, for an XLA:CPU report: AlexNet's conv1 (11x11, stride 4) is slow.

  python bench/xla_conv1_repro.py                  # XLA_FLAGS as set (none: XLA's defaults)
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_dot python bench/xla_conv1_repro.py

Needs only jax (and torch for its column); imports nothing from this project. Times, on random
data, the forward convolution and its kernel gradient (the input needs none: it is the image)
for the quickstart's conv1 (batch 64, 112x112x3 -> 27x27x24) and the paper's (batch 32,
224x224x3 -> 55x55x96), NHWC/HWIO as JAX writes them, against PyTorch's F.conv2d (NCHW) on the
same numbers. Each figure is the best of several rounds (a shared machine disturbs the rest).

What it showed (bench/RESULTS.md): with YNNPACK (XLA's default for convolutions in this jaxlib)
the forward runs on one thread and is 10x slower than PyTorch's; with XLA's own convolutions the
forward is on par, but the kernel gradient, which XLA computes as a convolution over a
transposed input (batch as features, channels as batch) with the output gradient as a dilated
27x27 kernel, stays several times slower than PyTorch's weight gradient.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

CASES = {'quickstart conv1': (64, 112, 24), 'paper conv1': (32, 224, 96)}
PADDING = ((0, 3), (0, 3))  # as the net pads a 224 (or 112) input for 55 (27) outputs
ROUNDS = 7


def best_ms(fn, reps=3):
  fn()
  best = float('inf')
  for _ in range(ROUNDS):
    start = time.perf_counter()
    for _ in range(reps):
      fn()
    best = min(best, (time.perf_counter() - start) / reps)
  return 1000 * best


def jax_times(batch, size, filters):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, size, size, 3)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((11, 11, 3, filters)) * 0.01, jnp.float32)

  def conv(x, k):
    return jax.lax.conv_general_dilated(x, k, (4, 4), PADDING,
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  out = conv(x, k)
  g = jnp.asarray(rng.standard_normal(out.shape), jnp.float32)
  forward = jax.jit(conv)
  kernel_grad = jax.jit(lambda x, k, g: jax.vjp(lambda k: conv(x, k), k)[1](g)[0])
  return (best_ms(lambda: forward(x, k).block_until_ready()),
          best_ms(lambda: kernel_grad(x, k, g).block_until_ready()),
          (np.array(x), np.array(k), np.array(g)))


def torch_times(x, k, g):
  import torch
  import torch.nn.functional as F
  xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
  wt = torch.from_numpy(k).permute(3, 2, 0, 1).contiguous()
  gt = torch.from_numpy(g).permute(0, 3, 1, 2).contiguous()

  def forward():
    with torch.no_grad():
      F.conv2d(F.pad(xt, (0, 3, 0, 3)), wt, stride=4)

  xp = F.pad(xt, (0, 3, 0, 3))

  def kernel_grad():  # the weight gradient alone, as autograd's backward calls it
    return torch.ops.aten.convolution_backward(
        gt, xp, wt, None, (4, 4), (0, 0), (1, 1), False, (0, 0), 1, (False, True, False))[1]

  return best_ms(forward), best_ms(kernel_grad)


def main():
  try:
    import torch
    torch_version = torch.__version__
  except ImportError:
    torch_version = None
  print(f'jax {jax.__version__}, {os.cpu_count()} CPU cores, XLA_FLAGS='
        f'{os.environ.get("XLA_FLAGS", "")!r}, torch {torch_version}')
  print(f'{"case":<18} {"XLA fwd ms":>11} {"XLA dK ms":>10} {"torch fwd":>10} {"torch dK":>9}')
  for name, (batch, size, filters) in CASES.items():
    fwd, dk, arrays = jax_times(batch, size, filters)
    t_fwd, t_dk = torch_times(*arrays) if torch_version else (float('nan'),) * 2
    print(f'{name:<18} {fwd:11.1f} {dk:10.1f} {t_fwd:10.1f} {t_dk:9.1f}', flush=True)


if __name__ == '__main__':
  main()
