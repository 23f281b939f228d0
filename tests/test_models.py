import itertools

import pytest
import torch
import torch.nn as nn

from lab.config import (
    ACTIVATIONS,
    DOWNSAMPLES,
    HEADS,
    NORM_POSITIONS,
    NORMS,
    ConfigError,
    apply_overrides,
    default_config,
)
from lab.models import PCA, Classifier, ConvAutoencoder, build_model, count_parameters

BATCH = 3


def classifier(**overrides):
    return build_model(apply_overrides(default_config(), {f"model.{k}": v for k, v in overrides.items()}))


@pytest.mark.parametrize("norm,position,downsample,head",
                         list(itertools.product(NORMS, NORM_POSITIONS, DOWNSAMPLES, HEADS)))
def test_classifier_variants_give_ten_logits(norm, position, downsample, head):
    model = classifier(norm=norm, norm_position=position, downsample=downsample, head=head, head_width=8,
                       dropout=0.1, channels=[[4], [8, 8]], kernel_sizes=[3, 5])
    out = model(torch.randn(BATCH, 1, 28, 28))
    assert out.shape == (BATCH, 10)
    out.sum().backward()  # every variant trains
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("preset", ["fast_cnn", "simple_cnn"])
def test_presets_with_every_activation(preset, activation):
    cfg = apply_overrides(default_config(), {"model.preset": preset, "model.activation": activation})
    assert build_model(cfg)(torch.randn(BATCH, 1, 28, 28)).shape == (BATCH, 10)


def test_simple_cnn_is_the_specified_network():
    model = build_model(apply_overrides(default_config(), {"model.preset": "simple_cnn"}))
    convs = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0])
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [(1, 36, 5, 1), (36, 36, 5, 1), (36, 36, 2, 2), (36, 64, 3, 1), (64, 128, 3, 1),
                     (128, 128, 2, 2), (128, 256, 1, 1), (256, 10, 1, 1)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 5
    assert isinstance(model.head[-2], nn.AdaptiveAvgPool2d)
    feature_map = model.features(torch.zeros(1, 1, 28, 28))
    assert feature_map.shape == (1, 128, 3, 3)  # 28 -5-> 24 -5-> 20 -s2-> 10 -3-> 8 -3-> 6 -s2-> 3


def test_norm_position_orders_the_block():
    before = classifier(norm="batch", norm_position="before").features[0]
    after = classifier(norm="batch", norm_position="after").features[0]
    assert [type(m) for m in before] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert [type(m) for m in after] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    assert before[0].bias is None and after[0].bias is not None
    assert isinstance(classifier(norm="layer").features[0][1], nn.GroupNorm)


def test_wider_nets_have_more_parameters():
    assert count_parameters(classifier(channels=[[8], [16], [32]])) < count_parameters(classifier())


def test_a_network_that_shrinks_the_image_away_is_refused():
    with pytest.raises(ConfigError, match="model.channels"):
        classifier(channels=[[4], [4], [4], [4], [4], [4]], kernel_sizes=[3] * 6, padding="valid")


@pytest.mark.parametrize("channels", [[8], [8, 16], [8, 16, 32], [4, 8, 8, 8]])
@pytest.mark.parametrize("latent_dim", [2, 32])
@pytest.mark.parametrize("activation,norm", [("relu", "none"), ("tanh", "batch"), ("gelu", "layer"),
                                             ("leaky_relu", "none")])
def test_autoencoder_shapes(channels, latent_dim, activation, norm):
    cfg = apply_overrides(default_config("autoencoder"), {"model.channels": channels, "model.latent_dim": latent_dim,
                                                          "model.activation": activation, "model.norm": norm})
    model = build_model(cfg)
    assert isinstance(model, ConvAutoencoder)
    x = torch.rand(BATCH, 1, 28, 28)
    z = model.encode(x)
    assert z.shape == (BATCH, latent_dim)
    y = model.decode(z)
    assert y.shape == (BATCH, 1, 28, 28)
    assert y.min() >= 0 and y.max() <= 1


def test_pca_recovers_a_low_rank_set_exactly():
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(784, 3))[0].T  # (3, 784) orthonormal
    x = (0.5 + 0.05 * torch.randn(200, 3) @ basis).view(200, 1, 28, 28)
    model = build_model(apply_overrides(default_config("autoencoder"), {"model.preset": "pca", "model.latent_dim": 3}))
    assert isinstance(model, PCA)
    model.fit(x)
    assert model.encode(x).shape == (200, 3)
    assert torch.allclose(model(x), x, atol=1e-4)
    assert torch.allclose(model.components @ model.components.T, torch.eye(3), atol=1e-4)


def test_classifier_class_is_the_builder_output():
    assert isinstance(classifier(), Classifier)
