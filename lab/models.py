"""The classifier and autoencoder families: nn.Modules built from a config. No training code here."""

import torch
import torch.nn as nn

from lab.config import AutoencoderConfig, ClassifierConfig, ConfigError, RunConfig

IMAGE_SIZE = 28
NUM_CLASSES = 10


def activation(name: str) -> nn.Module:
    """An activation module by name."""
    return {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.1), "tanh": nn.Tanh, "gelu": nn.GELU,
            "silu": nn.SiLU}[name]()


def norm_layer(name: str, channels: int) -> nn.Module:
    """Batch norm, layer norm over (C, H, W) (GroupNorm with one group), or nothing."""
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def conv_block(c_in: int, c_out: int, kernel: int, padding: str | int, cfg: ClassifierConfig) -> nn.Sequential:
    """Conv, then norm and activation in the configured order."""
    norm_first = cfg.norm != "none" and cfg.norm_position == "before"
    conv = nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=not norm_first)  # a norm right after removes a bias
    norm, act = norm_layer(cfg.norm, c_out), activation(cfg.activation)
    return nn.Sequential(conv, norm, act) if cfg.norm_position == "before" else nn.Sequential(conv, act, norm)


def downsample(kind: str, channels: int) -> nn.Module:
    """Halve the feature map: a 2x2 stride-2 conv, or 2x2 max or average pooling."""
    if kind == "stride":
        return nn.Conv2d(channels, channels, 2, stride=2)
    return nn.MaxPool2d(2) if kind == "max" else nn.AvgPool2d(2)


class Classifier(nn.Module):
    """Conv stages (a downsample after each) and a head: fully connected, or 1x1 convs + global average pool."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c = 1
        for widths, kernel in zip(cfg.channels, cfg.kernel_sizes):
            for width in widths:
                layers.append(conv_block(c, width, kernel, cfg.padding, cfg))
                c = width
            layers.append(downsample(cfg.downsample, c))
            if cfg.dropout:
                layers.append(nn.Dropout(cfg.dropout))
        self.features = nn.Sequential(*layers)
        c, h, w = feature_shape(self.features, where="model.channels/model.kernel_sizes")  # no magic sizes
        head: list[nn.Module] = []
        if cfg.head == "fc":
            head.append(nn.Flatten())  # (B, C*H*W)
            features = c * h * w
            if cfg.head_width:
                head += [nn.Linear(features, cfg.head_width), activation(cfg.activation)]
                features = cfg.head_width
            if cfg.dropout:
                head.append(nn.Dropout(cfg.dropout))
            head.append(nn.Linear(features, NUM_CLASSES))
        else:
            if cfg.head_width:
                head.append(conv_block(c, cfg.head_width, 1, 0, cfg))
                c = cfg.head_width
            if cfg.dropout:
                head.append(nn.Dropout(cfg.dropout))
            head += [nn.Conv2d(c, NUM_CLASSES, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # (B, 10)
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, 1, 28, 28) -> (B, 10) logits


def feature_shape(module: nn.Module, where: str) -> tuple[int, ...]:
    """The (C, H, W) a module makes of one 28x28 image; a ConfigError if the image shrinks to nothing."""
    was_training = module.training
    module.eval()  # so a dummy pass leaves batch-norm statistics alone
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE))
    except RuntimeError as error:
        raise ConfigError(f"{where}: the 28x28 image shrinks to nothing in this network ({error})") from None
    finally:
        module.train(was_training)
    if out.numel() == 0:
        raise ConfigError(f"{where}: the 28x28 image shrinks to nothing in this network")
    return tuple(out.shape[1:])


def _halved(size: int) -> int:
    return (size + 2 - 3) // 2 + 1  # a 3x3 conv, stride 2, padding 1


class ConvAutoencoder(nn.Module):
    """Strided-conv encoder -> latent vector -> transposed-conv decoder; outputs in [0, 1]."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        sizes = [IMAGE_SIZE]
        for _ in cfg.channels:
            sizes.append(_halved(sizes[-1]))  # e.g. 28 -> 14 -> 7
        widths = (1, *cfg.channels)
        enc: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:]):
            enc += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), norm_layer(cfg.norm, c_out),
                    activation(cfg.activation)]
        flat = widths[-1] * sizes[-1] ** 2
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, cfg.latent_dim))  # (B, latent_dim)
        dec: list[nn.Module] = [nn.Linear(cfg.latent_dim, flat), activation(cfg.activation),
                                nn.Unflatten(1, (widths[-1], sizes[-1], sizes[-1]))]
        for i in range(len(cfg.channels), 0, -1):
            # choose output_padding so each transposed conv gives back the encoder's size exactly
            extra = sizes[i - 1] - (2 * sizes[i] - 1)
            dec.append(nn.ConvTranspose2d(widths[i], widths[i - 1], 3, stride=2, padding=1, output_padding=extra))
            if i > 1:
                dec += [norm_layer(cfg.norm, widths[i - 1]), activation(cfg.activation)]
        self.decoder = nn.Sequential(*dec, nn.Sigmoid())  # (B, 1, 28, 28) in [0, 1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class PCA(nn.Module):
    """The linear baseline: project onto the top principal components and back, clipped to [0, 1]."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        pixels = IMAGE_SIZE * IMAGE_SIZE
        self.register_buffer("mean", torch.zeros(pixels))
        self.register_buffer("components", torch.zeros(cfg.latent_dim, pixels))  # (latent_dim, 784), orthonormal rows

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> "PCA":
        """Fit on (N, 1, 28, 28) images in [0, 1]."""
        flat = x.flatten(1).double()  # (N, 784)
        mean = flat.mean(0)
        centred = flat - mean
        covariance = centred.T @ centred / (len(flat) - 1)
        _, vectors = torch.linalg.eigh(covariance)  # eigenvalues ascending
        k = self.components.shape[0]
        self.mean.copy_(mean.float())
        self.components.copy_(vectors[:, -k:].flip(1).T.float())
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.mean) @ self.components.T  # (B, latent_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.components + self.mean).clamp(0, 1).view(-1, 1, IMAGE_SIZE, IMAGE_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def build_model(cfg: RunConfig) -> nn.Module:
    """The nn.Module a run config describes."""
    if cfg.task == "classifier":
        return Classifier(cfg.model)
    return PCA(cfg.model) if cfg.model.arch == "pca" else ConvAutoencoder(cfg.model)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, plus buffers for models (PCA) that learn none by gradient."""
    params = sum(p.numel() for p in model.parameters())
    return params or sum(b.numel() for b in model.buffers())
