"""The torch contender of bench/train_step.py: the paper's net in PyTorch and its training step.

Grouped convolutions for the own-column layers, torch's LRN and max-pooling, SGD with momentum
0.9 and weight decay 5e-4; the step does the input's float work as ours does (PCA colour noise
with the original code's constants, the mean image, the input scale). Loaded by the worker
process of a `torch` contender only.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

# The original code's PCA of ImageNet RGB pixels (config.data.pca_noise='code'): eigenvector
# columns times the components' standard deviations, 0-255 units.
CODE_PCA = (torch.tensor([[0.418, -0.713, -0.564], [-0.817, -0.024, -0.576],
                          [0.397, 0.701, -0.592]]) * torch.tensor([19.72, 37.09, 121.78]))


class TorchAlexNet:
  """The paper's net in PyTorch (NCHW, grouped convolutions), parameters in torch's layouts."""

  def __init__(self, arrays, cfg):
    self.cfg = cfg
    self.params = {}
    for name in ('conv1', 'conv2', 'conv3', 'conv4', 'conv5'):
      k = arrays[f'{name}/kernel']  # [C, kh, kw, in, out] -> [C * out, in, kh, kw]
      c, kh, kw, cin, cout = k.shape
      self.params[name + '.w'] = np.ascontiguousarray(
          k.transpose(0, 4, 3, 1, 2).reshape(c * cout, cin, kh, kw))
      self.params[name + '.b'] = arrays[f'{name}/bias'].reshape(-1)
    for name in ('fc6', 'fc7', 'fc8'):
      k = arrays[f'{name}/kernel']  # [C, in, out] -> [C * out, in] (nn.Linear's layout)
      c, fan_in, out = k.shape
      self.params[name + '.w'] = np.ascontiguousarray(
          k.transpose(0, 2, 1).reshape(c * out, fan_in))
      self.params[name + '.b'] = arrays[f'{name}/bias'].reshape(-1)
    self.params = {k: torch.tensor(v, requires_grad=True) for k, v in self.params.items()}

  def __call__(self, x):
    from alexnet_jax.model import alexnet as model_lib
    p, c, m = self.params, self.cfg.columns, self.cfg

    def lrn(x):
      return torch.cat([F.local_response_norm(part, m.lrn_size, alpha=m.lrn_alpha,
                                              beta=m.lrn_beta, k=m.lrn_k)
                        for part in torch.chunk(x, c, 1)], 1)

    (top, bottom), (left, right) = model_lib.conv1_padding(m)
    x = F.pad(x, (left, right, top, bottom))
    x = F.max_pool2d(lrn(torch.relu(F.conv2d(x, p['conv1.w'], p['conv1.b'], stride=4))), 3, 2)
    x = torch.relu(F.conv2d(x, p['conv2.w'], p['conv2.b'], padding=2, groups=c))
    x = F.max_pool2d(lrn(x), 3, 2)
    x = torch.relu(F.conv2d(x, p['conv3.w'], p['conv3.b'], padding=1))
    x = torch.relu(F.conv2d(x, p['conv4.w'], p['conv4.b'], padding=1, groups=c))
    x = torch.relu(F.conv2d(x, p['conv5.w'], p['conv5.b'], padding=1, groups=c))
    x = F.max_pool2d(x, 3, 2)
    x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # NHWC flattening, as ours
    x = F.dropout(torch.relu(F.linear(x, p['fc6.w'], p['fc6.b'])), m.dropout)
    x = F.dropout(torch.relu(F.linear(x, p['fc7.w'], p['fc7.b'])), m.dropout)
    return F.linear(x, p['fc8.w'], p['fc8.b'])


def make_step(config, arrays: dict, crops: np.ndarray, labels: np.ndarray,
              mean_image: np.ndarray):
  """step() -> loss: one SGD step of the net of `arrays` (the jax worker's parameters) on the
  uint8 crops [B, S, S, 3], with a mean image [R, R, 3] whose centre is subtracted."""
  net = TorchAlexNet(arrays, config.model)
  opt = torch.optim.SGD(list(net.params.values()), lr=0.01, momentum=0.9, weight_decay=5e-4)
  batch = len(crops)
  crops = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
  y = torch.from_numpy(labels).long()
  size = config.model.input_size
  offset = (mean_image.shape[0] - size) // 2
  mean = torch.from_numpy(np.ascontiguousarray(
      mean_image[offset:offset + size, offset:offset + size].transpose(2, 0, 1)))

  def step():
    opt.zero_grad(set_to_none=True)
    shift = (torch.randn(batch, 3) * config.data.pca_std) @ CODE_PCA.T
    x = (crops.float() + shift[:, :, None, None] - mean) * config.data.input_scale
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    return loss

  return step


def matmul_rate(n: int) -> float:
  """FLOP/s of torch.mm on float32 [n, n] matrices."""
  a = torch.ones(n, n)
  torch.mm(a, a)
  start = time.perf_counter()
  reps = 5
  for _ in range(reps):
    torch.mm(a, a)
  return 2.0 * n ** 3 * reps / (time.perf_counter() - start)


def describe() -> str:
  return f'torch {torch.__version__}, {torch.get_num_threads()} threads'
