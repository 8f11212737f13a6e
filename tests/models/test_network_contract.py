"""The contract every registered network passes, whatever its task (smp's tests/models/base.py habit).

For each network in the one registry, with its small ``example_params``, in 2D and 3D:
- the output has the shape its task promises (segmentation: the input's spatial shape; classification: one logit
  per class; detection: per pyramid level, anchors x classes and anchors x 2*ndim box values; promptable: the
  input's spatial shape with one channel, the object's logit);
- two forward passes in eval mode give identical outputs (no randomness left at inference);
- the weights survive a save/load round trip (``torch.save`` of the state dict into bytes, loaded into a fresh
  network built from the registry) with identical outputs.
"""

import io

import pytest
import torch

from medannot.data import Task
from medannot.models import create_network, get_network_spec, list_networks
from medannot.models.registry import resolved_params, size_divisor


def _flat(out):
    """Every tensor of a network's output (tensor, list or dict of lists), in a fixed order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flat(out[k])]
    return [t for item in out for t in _flat(item)]


def _out_channels(spec):
    return 1 if spec.task is Task.PROMPTABLE else 3  # a promptable network has one output: the object's logit


def _build(name, dims, in_ch=2):
    spec = get_network_spec(name)
    out_ch = _out_channels(spec)
    torch.manual_seed(0)
    net = create_network(name, dims, in_ch, out_ch, **spec.example_params)
    params = resolved_params(name, spec.example_params)
    size = max(16, 2 * size_divisor(name, spec.example_params))  # instance norm needs > 1 voxel at the bottom
    if spec.task is Task.CLASSIFICATION:
        size = max(size, 32)  # DenseNet/ResNet pool four times
    return spec, net, params, torch.randn((2, in_ch) + (size,) * dims)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", list_networks())
def test_output_shape_of_its_task(name, dims):
    spec, net, params, x = _build(name, dims)
    with torch.inference_mode():
        y = net.eval()(x)
    if spec.task is Task.CLASSIFICATION:
        assert y.shape == (2, 3)
    elif spec.task is Task.DETECTION:
        cls, box = y[net.cls_key], y[net.box_reg_key]
        anchors = params["num_anchors"]
        assert len(cls) == len(box) >= 1
        for c, b in zip(cls, box):
            assert c.shape[:2] == (2, anchors * 3) and b.shape[:2] == (2, anchors * 2 * dims)
            assert c.shape[2:] == b.shape[2:] and len(c.shape) == 2 + dims
    elif spec.task is Task.PROMPTABLE:
        assert y.shape == (2, 1) + tuple(x.shape[2:])
    else:
        assert y.shape == (2, 3) + tuple(x.shape[2:])
    assert all(torch.isfinite(t).all() for t in _flat(y))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", list_networks())
def test_deterministic_in_eval_mode_and_weights_round_trip(name, dims):
    spec, net, _, x = _build(name, dims)
    net.eval()
    with torch.inference_mode():
        first = _flat(net(x))
        second = _flat(net(x))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    torch.manual_seed(123)  # a different initialisation, to be overwritten by the loaded weights
    fresh = create_network(name, dims, 2, _out_channels(spec), **spec.example_params)
    fresh.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    with torch.inference_mode():
        again = _flat(fresh.eval()(x))
    assert len(again) == len(first) and all(torch.equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize("name", list_networks())
def test_registered_facts_are_consistent(name):
    spec = get_network_spec(name)
    assert spec.task in Task and spec.description
    assert spec.output_channels(4) == (4 if spec.outputs_background else 3)
    if spec.task is Task.PROMPTABLE:  # one object logit: any other output count is refused
        from medannot.errors import ModelError

        with pytest.raises(ModelError, match="one output"):
            create_network(name, 2, 5, 2, **spec.example_params)
    if spec.head is not None:  # the head's weight rows are the outputs
        net = create_network(name, 2, 1, 3, **spec.example_params)
        assert dict(net.named_parameters())[f"{spec.head}.weight"].shape[0] == 3
