"""How the per-column convolutions should run on one device: measured, in one run.

Times one training step (forward + backward, SGD update excluded) of the paper's two-column net
for each implementation choice of `config.model.conv_impl` / `conv1_impl`, next to the same net in
PyTorch (grouped convolutions, the reference net of the tests) on the same machine, and prints
images/s for each.

  python bench/conv_impl.py --batch=32 --width=1.0 --steps=3
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from alexnet_jax.model import alexnet as model_lib  # noqa: E402
from configs.alexnet import get_config  # noqa: E402


def time_jax(cfg, images, labels, steps):
  model = model_lib.create_model(cfg)
  graphdef, params = nnx.split(model, nnx.Param)

  @jax.jit
  def grad_step(params, images, labels, key):
    def loss(p):
      logits = nnx.merge(graphdef, p)(images, train=True, dropout_key=key)
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
    return jax.grad(loss)(params)

  key = jax.random.key(0)
  t0 = time.perf_counter()
  jax.block_until_ready(grad_step(params, images, labels, key))
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for i in range(steps):
    jax.block_until_ready(grad_step(params, images, labels, jax.random.fold_in(key, i)))
  return (time.perf_counter() - t0) / steps, compile_s, params


def time_torch(cfg, params, images, labels, steps):
  import torch
  import torch.nn.functional as F
  torch.set_num_threads(os.cpu_count())
  tensors = jax.tree.map(lambda a: torch.tensor(np.asarray(a), requires_grad=True),
                         nnx.to_pure_dict(params))

  def step():
    logits = _torch_forward(tensors, cfg, images)
    F.cross_entropy(logits, torch.from_numpy(labels).long()).backward()

  step()
  t0 = time.perf_counter()
  for _ in range(steps):
    step()
  return (time.perf_counter() - t0) / steps


def _torch_forward(tensors, cfg, images):
  """The paper's net in PyTorch: own-column layers as grouped convolutions."""
  import torch
  import torch.nn.functional as F
  x = torch.from_numpy(images).permute(0, 3, 1, 2)
  c = cfg.columns

  def w(name):
    k = tensors[name]['kernel']  # [C, kh, kw, in, out]
    cc, kh, kw, cin, cout = k.shape
    return k.permute(0, 4, 3, 1, 2).reshape(cc * cout, cin, kh, kw), tensors[name]['bias'].reshape(-1)

  def lrn(x):
    return torch.cat([F.local_response_norm(p, 5, alpha=1e-4, beta=0.75, k=2.0)
                      for p in torch.chunk(x, c, 1)], 1)

  (top, bottom), (left, right) = model_lib.conv1_padding(cfg)
  x = F.pad(x, (left, right, top, bottom))
  x = F.max_pool2d(lrn(torch.relu(F.conv2d(x, *w('conv1'), stride=4))), 3, 2)
  x = F.max_pool2d(lrn(torch.relu(F.conv2d(x, *w('conv2'), padding=2, groups=c))), 3, 2)
  x = torch.relu(F.conv2d(x, *w('conv3'), padding=1))
  x = torch.relu(F.conv2d(x, *w('conv4'), padding=1, groups=c))
  x = F.max_pool2d(torch.relu(F.conv2d(x, *w('conv5'), padding=1, groups=c)), 3, 2)
  x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
  for name in ('fc6', 'fc7', 'fc8'):
    k = tensors[name]['kernel']
    cc, fan_in, out = k.shape
    x = x @ k.permute(1, 0, 2).reshape(fan_in, cc * out) + tensors[name]['bias'].reshape(-1)
    if name != 'fc8':
      x = F.dropout(torch.relu(x), 0.5)
  return x


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--width', type=float, default=1.0)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--input_size', type=int, default=224)
  parser.add_argument('--no-torch', action='store_true')
  args = parser.parse_args()
  base = get_config().model
  base.width = args.width
  base.input_size = args.input_size
  rng = np.random.default_rng(0)
  size = args.input_size
  images = rng.standard_normal((args.batch, size, size, 3)).astype(np.float32)
  labels = rng.integers(0, 1000, args.batch).astype(np.int32)
  print(f'backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), '
        f'{os.cpu_count()} CPU cores, batch {args.batch}, width {args.width}, input {size}')
  print(f'{"implementation":<36} {"step (s)":>9} {"images/s":>9} {"compile (s)":>12}')
  params = None
  for conv_impl, conv1_impl in [('split', 'im2col'), ('split', 'conv'), ('grouped', 'im2col'),
                                ('grouped', 'conv')]:
    cfg = get_config().model
    cfg.update(base)
    cfg.conv_impl, cfg.conv1_impl = conv_impl, conv1_impl
    seconds, compile_s, params = time_jax(cfg, jnp.asarray(images), jnp.asarray(labels),
                                          args.steps)
    print(f'{"jax conv_impl=" + conv_impl + " conv1_impl=" + conv1_impl:<36} {seconds:>9.3f} '
          f'{args.batch / seconds:>9.1f} {compile_s:>12.1f}', flush=True)
  if not args.no_torch:
    seconds = time_torch(base, params, images, labels, args.steps)
    print(f'{"pytorch (grouped conv, same net)":<36} {seconds:>9.3f} {args.batch / seconds:>9.1f}',
          flush=True)


if __name__ == '__main__':
  main()
