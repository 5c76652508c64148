"""An independent AlexNet in plain PyTorch (NCHW, grouped convolutions), fed our parameters.

Written from PAPER.md's layer table, not from alexnet_jax.model: columns are torch `groups`,
"both columns" layers are ordinary convolutions, LRN is torch's (which divides alpha by size).
The one_weird_trick variant follows torchvision's AlexNet: no LRN, and its classifier
Dropout -> fc6 -> ReLU -> Dropout -> fc7 -> ReLU -> fc8 (dropout on the inputs of fc6 and fc7;
the paper's net drops the outputs of fc6 and fc7).
"""

import numpy as np
import torch
import torch.nn.functional as F


def _conv_weight(kernel):
  """[C, kh, kw, in, out] -> torch [C * out, in, kh, kw] (group c owns outputs c*out...)."""
  c, kh, kw, cin, cout = kernel.shape
  return kernel.permute(0, 4, 3, 1, 2).reshape(c * cout, cin, kh, kw)


def _lrn(x, columns, m):
  alpha = m.lrn_alpha if m.lrn_alpha_convention == 'code' else m.lrn_alpha * m.lrn_size
  parts = torch.chunk(x, columns, dim=1)  # each column normalizes over its own channels
  return torch.cat([F.local_response_norm(p, m.lrn_size, alpha=alpha, beta=m.lrn_beta,
                                          k=m.lrn_k) for p in parts], dim=1)


def _tensors(params, requires_grad=False):
  return {layer: {name: torch.tensor(np.array(v, np.float32), requires_grad=requires_grad)
                  for name, v in d.items()} for layer, d in params.items()}


def logits(params, m, images_nhwc, masks=None):
  """params: {'conv1': {'kernel', 'bias'}, ...} as NumPy; m: config.model; images NHWC.

  masks: None for the test-time net; else training-time dropout masks (0/1 NumPy arrays) by
  layer, {'fc6': ..., 'fc7': ...}, each shaped like what it drops: the layer's output (paper) or
  its flattened input in NHWC order (one_weird_trick).
  """
  with torch.no_grad():
    return _forward(_tensors(params), m, images_nhwc, masks).numpy()


def loss_and_grads(params, m, images_nhwc, labels, masks=None):
  """Mean softmax cross-entropy and its gradient for every parameter, by torch's autograd.

  The gradients come back in our layout ({'conv1': {'kernel', 'bias'}, ...}, NumPy): the
  layout changes are torch ops on the leaves, so autograd carries them back.
  """
  tensors = _tensors(params, requires_grad=True)
  out = _forward(tensors, m, images_nhwc, masks)
  loss = F.cross_entropy(out, torch.from_numpy(np.asarray(labels, np.int64)))
  loss.backward()
  grads = {layer: {name: t.grad.numpy() for name, t in d.items()} for layer, d in tensors.items()}
  return loss.item(), grads


def _forward(params, m, images_nhwc, masks):
  act = torch.relu if m.activation == 'relu' else torch.tanh
  pool = (lambda x: F.max_pool2d(x, 3, 2)) if m.overlap_pool else (lambda x: F.max_pool2d(x, 2, 2))
  columns = m.columns
  owt = m.variant == 'one_weird_trick'
  x = torch.from_numpy(np.array(images_nhwc, np.float32)).permute(0, 3, 1, 2)

  def conv(name, x, stride, padding, groups):
    p = params[name]
    return F.conv2d(x, _conv_weight(p['kernel']), p['bias'].reshape(-1), stride=stride,
                    padding=padding, groups=groups)

  # conv1 sees the whole image in both columns.
  if owt:
    x = conv('conv1', x, 4, 2, 1)
  else:
    size = x.shape[-1]
    extra = 0 if size == 227 else ((size - 11 + 3) // 4) * 4 + 11 - size
    x = conv('conv1', F.pad(x, (0, extra, 0, extra)), 4, 0, 1)
  lrn = m.lrn and not owt  # torchvision's AlexNet has no LRN
  if lrn and m.lrn_placement == 'code':
    x = act(pool(_lrn(x, columns, m)))
  else:
    x = act(x)
    x = _lrn(x, columns, m) if lrn else x
    x = pool(x)
  own = 1 if owt else columns
  x = act(conv('conv2', x, 1, 2, own))  # own column only
  x = pool(_lrn(x, columns, m) if lrn else x)
  x = act(conv('conv3', x, 1, 1, 1))     # both columns
  x = act(conv('conv4', x, 1, 1, own))   # own column only
  x = act(conv('conv5', x, 1, 1, own))   # own column only
  x = pool(x)
  x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # NHWC flattening order

  def dropout(x, name):
    if not m.dropout:
      return x
    keep = 1.0 - m.dropout
    if masks is None:  # test time: the paper scales by keep, inverted dropout does nothing
      return x * keep if m.dropout_mode == 'paper' else x
    x = x * torch.from_numpy(np.array(masks[name], np.float32).reshape(x.shape))
    return x / keep if m.dropout_mode == 'inverted' else x

  for name in ('fc6', 'fc7', 'fc8'):
    if owt and name != 'fc8':
      x = dropout(x, name)  # torchvision: Dropout -> Linear
    k = params[name]['kernel']
    c, fan_in, out = k.shape
    x = x @ k.permute(1, 0, 2).reshape(fan_in, c * out) + params[name]['bias'].reshape(-1)
    if name != 'fc8':
      x = act(x)
      if not owt:
        x = dropout(x, name)  # the paper: dropout on the outputs of fc6 and fc7
  return x
