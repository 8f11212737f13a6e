"""Inflating 2D weights into a 3D network: exact on depth-constant volumes, and through ``init.inflate``."""

import numpy as np
import pytest
import torch

from medannot.models import Bundle
from medannot.models.registry import create_network
from medannot.tasks import train
from medannot.training.config import InitConfig
from medannot.training.inflate import inflate_state
from medannot.training.loop import load_parent_weights
from traininghelpers import tiny_segmentation_config


def _layer_pair(kind, **kw):
    torch.manual_seed(0)
    two = getattr(torch.nn, f"{kind}2d")(3, 4, **kw)
    three = getattr(torch.nn, f"{kind}3d")(3, 4, **kw)
    wrapped = torch.nn.Sequential(three)
    state = {f"0.{k}": v for k, v in two.state_dict().items()}
    wrapped.load_state_dict(inflate_state(wrapped, state))
    return two, three


@pytest.mark.parametrize(("kind", "kw"), [
    ("Conv", {"kernel_size": 3, "padding": 1}),
    ("Conv", {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("ConvTranspose", {"kernel_size": 2, "stride": 2}),
    ("ConvTranspose", {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}),  # MONAI UNet's up-sampling
])
def test_an_inflated_layer_answers_a_depth_constant_volume_like_the_2d_layer(kind, kw):
    two, three = _layer_pair(kind, **kw)
    x2 = torch.randn(1, 3, 12, 10)
    x3 = x2.unsqueeze(2).repeat(1, 1, 12, 1, 1)
    with torch.no_grad():
        y2, y3 = two(x2), three(x3)
    inner = y3[:, :, 2:-2]  # away from depth's zero padding
    assert inner.shape[2] > 0
    for z in range(inner.shape[2]):
        torch.testing.assert_close(inner[:, :, z], y2, rtol=1e-5, atol=1e-5)
    # a uniform 1/k instead of the residue-class factors is wrong for stride-2, kernel-3 transposed convolutions
    if kind == "ConvTranspose" and kw["kernel_size"] == 3:
        naive = three.weight.detach().clone()
        naive[:] = naive.sum(2, keepdim=True) / 3
        with torch.no_grad():
            three.weight.copy_(naive)
            assert not torch.allclose(three(x3)[:, :, 2:-2][:, :, 0], y2, atol=1e-3)


def test_a_2d_parent_starts_a_3d_network_with_every_tensor_and_the_record_says_so(tmp_path):
    (tmp_path / "p").mkdir()
    parent = train(tiny_segmentation_config(tmp_path / "p"), progress=False)
    spec = Bundle.load(parent).spec
    net3 = create_network(spec.network.name, 3, spec.in_channels, 2, **spec.network.params)
    plain, _ = load_parent_weights(net3, InitConfig(bundle=str(parent)))  # without inflate: only biases and norms fit
    assert plain["new"] > 0 and plain["inflated_from"] is None
    net3 = create_network(spec.network.name, 3, spec.in_channels, 2, **spec.network.params)
    record, copied = load_parent_weights(net3, InitConfig(bundle=str(parent), inflate=True))
    assert record["new"] == 0 and record["copied"] == len(net3.state_dict()) == len(copied)
    assert record["inflated_from"] == 2
    # the inflated 3D U-Net segments an extruded copy of the parent's image like the parent segments the slice
    parent_net = Bundle.load(parent).build_network().eval()
    net3.eval()
    x2 = torch.randn(1, spec.in_channels, 32, 32)
    with torch.no_grad():
        a = parent_net(x2).argmax(1)[0]
        b = net3(x2.unsqueeze(2).repeat(1, 1, 32, 1, 1)).argmax(1)[0, 16]
    assert (a == b).float().mean() > 0.95


def test_the_shipped_2d_promptable_network_inflates_to_3d():
    b = Bundle.load("promptable-2d")
    net3 = create_network(b.spec.network.name, 3, b.spec.in_channels, 1, **b.spec.network.params)
    net3.load_state_dict(inflate_state(net3, b.read_weights()))
    torch.manual_seed(0)
    x2 = torch.randn(1, b.spec.in_channels, 48, 48)
    with torch.no_grad():
        y2 = b.build_network().eval()(x2)[0, 0]
        y3 = net3.eval()(x2.unsqueeze(2).repeat(1, 1, 48, 1, 1))[0, 0, 24]
    assert np.corrcoef(y2.flatten().numpy(), y3.flatten().numpy())[0, 1] > 0.95
