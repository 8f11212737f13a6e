"""Contract every registered network passes: builds in 2D and 3D and keeps the spatial shape."""

import pytest
import torch

from medannot.errors import ModelError
from medannot.models import create_network, list_networks
from medannot.models.registry import size_divisor

TINY = {
    "unet": {"channels": (4, 8), "strides": (2,), "num_res_units": 1},
    "attention-unet": {"channels": (4, 8), "strides": (2,)},
    "basicunet": {"features": (4, 4, 8, 8, 16, 4)},
    "segresnet": {"init_filters": 8, "blocks_down": (1, 1), "blocks_up": (1,)},
}


def test_builtin_networks_registered():
    assert {"unet", "basicunet", "attention-unet", "segresnet"} <= set(list_networks())


@pytest.mark.parametrize("name", list_networks())
@pytest.mark.parametrize("dims", [2, 3])
def test_forward_shape(name, dims):
    torch.manual_seed(0)
    params = TINY.get(name, {})
    net = create_network(name, dims, 2, 3, **params).eval()
    size = max(16, 2 * size_divisor(name, params))  # instance norm needs > 1 voxel at the bottom
    x = torch.randn((1, 2) + (size,) * dims)
    with torch.inference_mode():
        y = net(x)
    assert y.shape == (1, 3) + (size,) * dims
    assert torch.isfinite(y).all()


def test_unknown_network_lists_valid_names():
    with pytest.raises(ModelError, match="unknown network 'vnet9'.*unet"):
        create_network("vnet9", 2, 1, 2)


def test_bad_params_are_model_errors():
    with pytest.raises(ModelError, match="cannot build network 'unet'"):
        create_network("unet", 2, 1, 2, not_a_param=3)
    with pytest.raises(ModelError, match="spatial_dims"):
        create_network("unet", 4, 1, 2)


def test_defaults_apply_and_can_be_overridden():
    net = create_network("unet", 2, 1, 2)
    small = create_network("unet", 2, 1, 2, channels=(4, 8), strides=(2,))
    n_big = sum(p.numel() for p in net.parameters())
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < n_big
