"""The stacked forward without vmap: M models folded into the channel axis of one ordinary network.

A batch of M models' activations is held as one tensor ``[B, M*C, H, W]`` (model-major channels), so each
layer is one ordinary kernel call: a convolution with ``groups = M``, BatchNorm over ``M*C`` channels,
pooling and ReLU unchanged (they act per channel), a Linear layer as one batched matrix product. This is
what ``torch.func.vmap`` does inside its batching rules too, but vmap moves the model axis around
between layers (copies into ``[M*B, C, H, W]`` for pooling, strided element-wise ops for BatchNorm's
affine part, a decomposed BatchNorm in eval mode); held still, the same arithmetic runs 1.4-2x faster
on a CPU for the digits net. The operations and their order are vmap's - BatchNorm normalises without
its affine parameters and then multiplies and adds them, as vmap's rule does - so the logits, gradients
and BatchNorm statistics are bit-identical to :func:`~unlearnbench.stack.ModelStack.forward` through
vmap (tested for every architecture this applies to).

The template network's own ``forward`` runs unchanged on the folded tensor, with its leaf layers
swapped for folded ones; so it applies only to architectures whose non-leaf code acts per channel
(residual sums, a logit scale, ``flatten``) and whose leaves are among the layers below:
:data:`ARCHITECTURES` lists the ones checked. Anything else uses vmap.
"""

from __future__ import annotations

import copy
import weakref

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURES = frozenset({"digits_cnn", "resnet9", "resnet18"})


class _State:
    """What the folded leaves read during one call: the stacked tensors and the number of models."""

    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    m: int
    train: bool
    channels_last: bool


class _Leaf(nn.Module):
    def __init__(self, name: str, layer: nn.Module, state: _State):
        super().__init__()
        self.prefix = f"{name}." if name else ""
        self.layer = layer
        self.state = state

    def p(self, key: str) -> torch.Tensor:
        return self.state.params[self.prefix + key]

    def b(self, key: str) -> torch.Tensor:
        return self.state.buffers[self.prefix + key]

    def widen(self, h: torch.Tensor, channels: int) -> torch.Tensor:
        """A shared input (every model sees the same ``[B, C, ...]``) repeated once per model."""
        return h.repeat(1, self.state.m, *([1] * (h.dim() - 2))) if h.shape[1] == channels and self.state.m > 1 else h


class _Conv2d(_Leaf):
    def forward(self, h):
        conv, m = self.layer, self.state.m
        w = self.p("weight")
        weight = w.view(m * w.shape[1], *w.shape[2:])
        bias = self.p("bias").view(-1) if conv.bias is not None else None
        if h.shape[1] == conv.in_channels and conv.groups == 1:
            groups = 1  # a shared input: every model's filters see the same channels (as vmap does)
        else:
            h = self.widen(h, conv.in_channels)
            groups = m * conv.groups
        if self.state.channels_last and conv.in_channels == 1:
            # one input channel per model: channels-last is ambiguous for a single model and explicit for
            # several, so the kernel would differ with the number of models; run it contiguous for any M
            # ("batched equals one at a time"), then continue channels-last
            h, weight = h.contiguous(), weight.contiguous()
        out = F.conv2d(h, weight, bias, conv.stride, conv.padding, conv.dilation, groups)
        if self.state.channels_last and not out.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out


class _BatchNorm2d(_Leaf):
    def forward(self, h):
        bn = self.layer
        h = self.widen(h, bn.num_features)
        shape = (1, -1) + (1,) * (h.dim() - 2)
        if self.state.train:
            self.b("num_batches_tracked").add_(1)
        h = F.batch_norm(h, self.b("running_mean").view(-1), self.b("running_var").view(-1), None, None,
                         self.state.train, bn.momentum, bn.eps)
        weight, bias = self.p("weight").view(shape), self.p("bias").view(shape)
        # the same products and sums, in place where nothing needs the tensor they overwrite: without a graph,
        # batch_norm's fresh output; with one, the product (autograd keeps a product's inputs, not its result)
        if torch.is_grad_enabled():
            return (h * weight).add_(bias)
        return h.mul_(weight).add_(bias)


class _Linear(_Leaf):
    """Returns model-major ``[M, B, O]``, as vmap computes it (the bias gradient then sums over B in
    vmap's order); a following Linear takes that layout as it is."""

    def forward(self, h):
        lin, m = self.layer, self.state.m
        if h.dim() == 3:  # model-major, from a Linear before this one
            out = torch.einsum("mbf,mof->mbo", h, self.p("weight"))
        else:
            h = self.widen(h, lin.in_features)
            out = torch.einsum("bmf,mof->mbo", h.view(h.shape[0], m, lin.in_features), self.p("weight"))
        if lin.bias is not None:
            out = out + self.p("bias")[:, None, :]
        return out


class _Unchanged(_Leaf):
    """Layers that act on every channel alike: the folded tensor passes through the layer itself."""

    def forward(self, h):
        return self.layer(h)


def _folded_leaf(layer: nn.Module) -> type[_Leaf] | None:
    if isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros":
        return _Conv2d
    if isinstance(layer, nn.BatchNorm2d) and layer.affine and layer.track_running_stats and layer.momentum is not None:
        return _BatchNorm2d
    if isinstance(layer, nn.Linear):
        return _Linear
    if isinstance(layer, (nn.ReLU, nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d, nn.Identity)):
        return _Unchanged
    if isinstance(layer, nn.Flatten) and layer.start_dim == 1 and layer.end_dim == -1:
        return _Unchanged
    return None


class Folded:
    """A template network rebuilt with folded leaves, callable on stacked parameters."""

    def __init__(self, template: nn.Module):
        self.state = _State()
        self.net = copy.deepcopy(template)
        for name, layer in list(self.net.named_modules()):
            if name and next(layer.children(), None) is None:
                leaf = _folded_leaf(layer)
                if leaf is None:
                    raise NotImplementedError(f"no folded form of {type(layer).__name__}")
                parent, _, attr = name.rpartition(".")
                setattr(self.net.get_submodule(parent) if parent else self.net, attr, leaf(name, layer, self.state))

    def __call__(self, params, buffers, x: torch.Tensor, x_dim: int | None, train: bool,
                 channels_last: bool = False) -> torch.Tensor:
        m = next(iter(params.values())).shape[0]
        self.state.params, self.state.buffers, self.state.m, self.state.train = params, buffers, m, train
        self.state.channels_last = channels_last
        try:
            if x_dim is None:
                h = x  # shared: the first convolution spreads it over the models
            else:
                b = x.shape[1]
                # a view when x is laid out [B, H, W, M, C] (ModelStack.model_channels_last), else a copy
                h = x.transpose(0, 1).reshape(b, m * x.shape[2], *x.shape[3:])
            self.net.train(train)
            out = self.net(h)
        finally:
            self.state.params = self.state.buffers = None
        if out.dim() == 3:  # a Linear head's model-major [M, B, O]
            return out
        return out.view(out.shape[0], m, -1).transpose(0, 1).contiguous()


_FOLDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def folded(arch: str, template: nn.Module) -> Folded | None:
    """The folded form of ``template`` (built once per template), or None where vmap must do."""
    if arch not in ARCHITECTURES:
        return None
    if template not in _FOLDED:
        try:
            _FOLDED[template] = Folded(template)
        except NotImplementedError:
            _FOLDED[template] = None
    return _FOLDED[template]
