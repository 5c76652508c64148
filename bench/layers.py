"""Where a training step's time goes, layer by layer: ours against PyTorch, in one process.

  python bench/layers.py --net=paper         # batch 32, 224 px
  python bench/layers.py --net=quickstart    # batch 64, 112 px, quarter width

Each row is one piece of the net, forward + backward (the gradients of its parameters and of
its input; conv1 has no input gradient), on random inputs of the shape it sees in the net:
ours as the model runs it (`model.conv_layer`, `AlexNet._lrn`, `AlexNet._pool`,
`model.dense_layer`), PyTorch's as the same net in PyTorch (bench/train_step.py) runs it. The
two alternate, round after round; each figure is the best round (the least disturbed by other
processes). The sum of the rows is not the step: the step adds the loss, the optimizer,
dropout and whatever XLA fuses across layers (bench/train_step.py measures that). PyTorch
suffers more from a busy machine: compare on an idle one, and write the load beside the
figures.
"""

from __future__ import annotations

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
from bench.train_step import NETS, load  # noqa: E402
from configs.alexnet import get_config  # noqa: E402


def _pieces(cfg, batch):
  """(name, jax fn, torch fn, jax inputs, torch inputs) for each piece of the net."""
  import torch
  import torch.nn.functional as F
  model = model_lib.create_model(cfg)
  captured = {}
  size = cfg.input_size
  rng = np.random.default_rng(0)
  images = rng.standard_normal((batch, size, size, 3)).astype(np.float32)
  model(jnp.asarray(images[:1]), capture=captured)
  columns = cfg.columns

  def nchw(a, grad=True):
    return torch.tensor(np.ascontiguousarray(a.transpose(0, 3, 1, 2)), requires_grad=grad)

  def activation(name, relu=True):
    shape = (batch,) + captured[name].shape[1:]
    a = rng.standard_normal(shape).astype(np.float32)
    return np.maximum(a, 0) * 10 if relu else a

  pieces = []
  previous = images
  for layer in model.conv_layers:
    module = getattr(model, layer.name)
    kernel, bias = np.asarray(module.kernel[...]), np.asarray(module.bias[...])
    x = previous if layer.name == 'conv1' else activation(prev_name)
    c, kh, kw, cin, cout = kernel.shape
    w_t = torch.tensor(np.ascontiguousarray(
        kernel.transpose(0, 4, 3, 1, 2).reshape(c * cout, cin, kh, kw)), requires_grad=True)
    b_t = torch.tensor(bias.reshape(-1), requires_grad=True)
    if layer.name == 'conv1':
      (top, bottom), (left, right) = model_lib.conv1_padding(cfg)

      def torch_conv(x, w, b, layer=layer, pads=(left, right, top, bottom)):
        return torch.relu(F.conv2d(F.pad(x, pads), w, b, stride=layer.stride))
    else:
      groups = 1 if layer.both_columns else columns

      def torch_conv(x, w, b, layer=layer, groups=groups):
        return torch.relu(F.conv2d(x, w, b, padding=layer.padding, groups=groups))

    def jax_conv(x, k, b, layer=layer):
      return jax.nn.relu(model_lib.conv_layer(cfg, layer, k, b, x))

    wrt = (1, 2) if layer.name == 'conv1' else (0, 1, 2)
    pieces.append((layer.name, jax_conv, wrt, (x, kernel, bias), torch_conv,
                   (nchw(x, layer.name != 'conv1'), w_t, b_t)))
    prev_name = layer.name
    if cfg.lrn and layer.lrn:
      a = activation(layer.name)

      def torch_lrn(x):
        return torch.cat([F.local_response_norm(p, cfg.lrn_size, alpha=cfg.lrn_alpha,
                                                beta=cfg.lrn_beta, k=cfg.lrn_k)
                          for p in torch.chunk(x, columns, 1)], 1)

      pieces.append(('lrn' + layer.name[-1], lambda x: model._lrn(x, columns), (0,), (a,),
                     torch_lrn, (nchw(a),)))
    if layer.pool:
      a = activation(layer.name)
      window = 3 if cfg.overlap_pool else 2
      pieces.append(('pool' + layer.name[-1], model._pool, (0,), (a,),
                     lambda x, window=window: F.max_pool2d(x, window, 2), (nchw(a),)))
      prev_name = 'pool' + layer.name[-1]
  x = activation(prev_name).reshape(batch, -1)
  for layer in model.dense_layers:
    module = getattr(model, layer.name)
    kernel, bias = np.asarray(module.kernel[...]), np.asarray(module.bias[...])
    c, fan_in, out = kernel.shape
    w_t = torch.tensor(np.ascontiguousarray(kernel.transpose(0, 2, 1).reshape(c * out, fan_in)),
                       requires_grad=True)
    b_t = torch.tensor(bias.reshape(-1), requires_grad=True)
    pieces.append((layer.name, lambda x, k, b: jax.nn.relu(model_lib.dense_layer(x, k, b)),
                   (0, 1, 2), (x, kernel, bias),
                   lambda x, w, b: torch.relu(F.linear(x, w, b)),
                   (torch.tensor(x, requires_grad=True), w_t, b_t)))
    x = np.maximum(rng.standard_normal((batch, c * out)), 0).astype(np.float32)
  return pieces


def _jax_runner(fn, wrt, inputs):
  inputs = [jnp.asarray(a) for a in inputs]
  out_shape = jax.eval_shape(fn, *inputs)
  cotangent = jnp.asarray(np.random.default_rng(1).standard_normal(out_shape.shape),
                          jnp.float32)

  @jax.jit
  def forward_backward(*args):
    _, vjp = jax.vjp(lambda *w: fn(*[w[wrt.index(i)] if i in wrt else a
                                     for i, a in enumerate(args)]),
                     *[args[i] for i in wrt])
    return vjp(cotangent)

  def run():
    jax.block_until_ready(forward_backward(*inputs))
  return run


def _torch_runner(fn, inputs):
  import torch
  cotangent = None

  def run():
    nonlocal cotangent
    for t in inputs:
      t.grad = None
    out = fn(*inputs)
    if cotangent is None:
      cotangent = torch.randn(out.shape)
    out.backward(cotangent)
  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--net', default='paper', choices=sorted(NETS))
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--only', default='', help='comma-separated piece names')
  parser.add_argument('--override', action='append', default=[],
                      help='FIELD=VALUE of config.model, e.g. conv1_impl=conv (repeat)')
  args = parser.parse_args()
  import torch
  config_arg, batch = NETS[args.net]
  cfg = get_config(config_arg).model
  for override in args.override:
    key, _, value = override.partition('=')
    cfg[key] = type(cfg[key])(value) if not isinstance(cfg[key], bool) else value == 'True'
  pieces = _pieces(cfg, batch)
  if args.only:
    pieces = [p for p in pieces if p[0] in args.only.split(',')]
  print(f'{args.net} net, batch {batch}; jax {jax.__version__}, torch {torch.__version__} '
        f'({torch.get_num_threads()} threads); XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}; '
        f'load before: {load()}')
  runners = [(name, _jax_runner(jfn, wrt, jin), _torch_runner(tfn, tin))
             for name, jfn, wrt, jin, tfn, tin in pieces]
  best = {name: [float('inf'), float('inf')] for name, _, _ in runners}
  for name, ours, theirs in runners:  # compile and warm up
    ours()
    theirs()
  for r in range(args.rounds):
    for name, ours, theirs in runners:
      pair = [(0, ours), (1, theirs)]
      for index, run in (pair if r % 2 == 0 else pair[::-1]):
        start = time.perf_counter()
        run()
        best[name][index] = min(best[name][index], time.perf_counter() - start)
  total = [0.0, 0.0]
  print(f'{"piece":<8} {"ours ms":>9} {"torch ms":>9} {"ours/torch time":>16}')
  for name, _, _ in runners:
    ours, theirs = best[name]
    total[0] += ours
    total[1] += theirs
    print(f'{name:<8} {1000 * ours:9.2f} {1000 * theirs:9.2f} {ours / theirs:16.2f}')
  print(f'{"sum":<8} {1000 * total[0]:9.2f} {1000 * total[1]:9.2f} {total[0] / total[1]:16.2f}')
  print(f'load after: {load()}')


if __name__ == '__main__':
  main()
