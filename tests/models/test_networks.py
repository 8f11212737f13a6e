"""Contract every registered network passes: builds in 2D and 3D and keeps the spatial shape."""

import pytest

from medannot.errors import ModelError
from medannot.models import create_network, list_networks


def test_builtin_networks_registered():
    assert {"unet", "basicunet", "attention-unet", "segresnet"} <= set(list_networks("segmentation"))
    assert {"densenet-small", "densenet121", "resnet-small", "resnet18"} <= set(list_networks("classification"))
    assert list_networks("detection") == ["retinanet"]
    assert list_networks("promptable") == ["promptable-unet"]
    assert set(list_networks()) == set().union(*(list_networks(t) for t in ("segmentation", "classification", "detection", "promptable")))


def test_unknown_network_lists_valid_names():
    with pytest.raises(ModelError, match="unknown network 'vnet9'.*unet"):
        create_network("vnet9", 2, 1, 2)


def test_bad_params_are_model_errors():
    with pytest.raises(ModelError, match="cannot build network 'unet'"):
        create_network("unet", 2, 1, 2, not_a_param=3)
    with pytest.raises(ModelError, match="spatial_dims"):
        create_network("unet", 4, 1, 2)
    with pytest.raises(ModelError, match="unknown params"):
        create_network("retinanet", 2, 1, 1, not_a_param=3)
    with pytest.raises(ModelError, match="out_channels >= 2"):
        create_network("densenet-small", 2, 1, 1)


def test_a_network_asked_for_another_task_names_the_right_ones():
    from medannot.models import get_network_spec

    with pytest.raises(ModelError, match="classification network, not a segmentation one; expected one of: attention-unet"):
        get_network_spec("densenet-small", "segmentation")


def test_defaults_apply_and_can_be_overridden():
    net = create_network("unet", 2, 1, 2)
    small = create_network("unet", 2, 1, 2, channels=(4, 8), strides=(2,))
    n_big = sum(p.numel() for p in net.parameters())
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < n_big
