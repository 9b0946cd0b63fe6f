#!/usr/bin/env python3
"""Independent PyTorch reference for vaewatch's conv-VAE.

Builds the network of `src/model/config.rs` / `src/model/vae.rs` from stock PyTorch layers
(`nn.Conv1d`, `nn.ConvTranspose1d`, `nn.Linear`, exact-erf `nn.GELU`), initialises it from a fixed
seed, and writes into `testdata/torch/`:

- `<name>_weights.safetensors`: the weights (F32), named as vaewatch names them
  (`enc.conv1.weight`, `dec.deconv2.bias`, ...), in PyTorch's layouts;
- `<name>_golden.safetensors`: golden tensors (F32):
  - `layer.*`: the output of every layer separately (batch 1 for `default`, 2 for `small`):
    `layer.input` is the network input and each later tensor is one layer (conv, GELU, flatten,
    linear, reshape, transposed conv) applied to the one before it; `layer.enc.logvar` and
    `layer.dec.linear` both take `layer.enc.flatten` / `layer.enc.mu`. The order is in the
    file's `layer_order` metadata;
  - `b1.*` and `b3.*`: the whole scoring path for batch 1 and batch 3: raw values, mask (1.0 =
    present), per-channel `center` and `scale`, the normalised input (masked values at 0),
    `mu`, `logvar`, the reconstruction of the posterior mean, the per-window score (mean squared
    error over present values) and per-channel errors (each channel's share of the score);
  - `grad.*` (`small` only): gradients of `sum(recon·g_recon) + sum(mu·g_mu) +
    sum(logvar·g_logvar)` on `layer.input` with respect to every weight, to check the backward
    pass training relies on.

for two architectures: `default` (C=8, W=128, latent 16, the reference model) and `small`
(C=3, W=32, latent 4, two encoder layers).

The Rust tests (`src/model/golden_tests.rs`) load these files and compare with tolerance 1e-4;
CI has no PyTorch, so the outputs are committed. Regenerate with:

    pip install torch safetensors numpy
    python3 scripts/torch_reference.py
"""

import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

OUT_DIR = Path(__file__).resolve().parent.parent / "testdata" / "torch"

CONFIGS = {
    "default": dict(channels=8, window=128, latent=16, encoder_widths=[32, 64, 64],
                    encoder_kernels=[7, 5, 5], decoder_widths=[64, 32]),
    "small": dict(channels=3, window=32, latent=4, encoder_widths=[8, 16],
                  encoder_kernels=[5, 3], decoder_widths=[8]),
}


class ReferenceVae(nn.Module):
    """The conv-VAE from stock layers; attribute paths give the safetensors names."""

    def __init__(self, channels, window, latent, encoder_widths, encoder_kernels, decoder_widths):
        super().__init__()
        self.bottleneck_width = encoder_widths[-1]
        self.bottleneck_len = window // 2 ** len(encoder_widths)
        flat = self.bottleneck_width * self.bottleneck_len
        self.enc = nn.Module()
        c_in = channels
        for i, (c_out, k) in enumerate(zip(encoder_widths, encoder_kernels), start=1):
            setattr(self.enc, f"conv{i}", nn.Conv1d(c_in, c_out, k, stride=2, padding=k // 2))
            c_in = c_out
        self.n_enc = len(encoder_widths)
        self.enc.mu = nn.Linear(flat, latent)
        self.enc.logvar = nn.Linear(flat, latent)
        self.dec = nn.Module()
        self.dec.linear = nn.Linear(latent, flat)
        widths = [self.bottleneck_width] + decoder_widths + [channels]
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            setattr(self.dec, f"deconv{i}", nn.ConvTranspose1d(a, b, 4, stride=2, padding=1))
        self.n_dec = len(widths) - 1
        self.gelu = nn.GELU(approximate="none")

    def layers(self, x):
        """Runs the network on x, returning [(name, output)] for every layer in order."""
        out = [("layer.input", x)]
        h = x
        for i in range(1, self.n_enc + 1):
            h = getattr(self.enc, f"conv{i}")(h)
            out.append((f"layer.enc.conv{i}", h))
            h = self.gelu(h)
            out.append((f"layer.enc.gelu{i}", h))
        h = h.flatten(1)
        out.append(("layer.enc.flatten", h))
        mu = self.enc.mu(h)
        out.append(("layer.enc.mu", mu))
        out.append(("layer.enc.logvar", self.enc.logvar(h)))
        h = self.dec.linear(mu)
        out.append(("layer.dec.linear", h))
        h = self.gelu(h)
        out.append(("layer.dec.gelu0", h))
        h = h.reshape(h.shape[0], self.bottleneck_width, self.bottleneck_len)
        out.append(("layer.dec.reshape", h))
        for i in range(1, self.n_dec + 1):
            h = getattr(self.dec, f"deconv{i}")(h)
            out.append((f"layer.dec.deconv{i}", h))
            if i < self.n_dec:
                h = self.gelu(h)
                out.append((f"layer.dec.gelu{i}", h))
        return out

    def forward_mean(self, x):
        h = x
        for i in range(1, self.n_enc + 1):
            h = self.gelu(getattr(self.enc, f"conv{i}")(h))
        h = h.flatten(1)
        mu, logvar = self.enc.mu(h), self.enc.logvar(h)
        d = self.gelu(self.dec.linear(mu))
        d = d.reshape(d.shape[0], self.bottleneck_width, self.bottleneck_len)
        for i in range(1, self.n_dec + 1):
            d = getattr(self.dec, f"deconv{i}")(d)
            if i < self.n_dec:
                d = self.gelu(d)
        return d, mu, logvar


def raw_windows(rng, batch, channels, window):
    """Sensor-like raw windows with per-channel offsets and units, plus a mask with gaps."""
    center = rng.uniform(-50.0, 80.0, size=channels)
    scale = rng.uniform(0.05, 20.0, size=channels)
    t = np.arange(window)
    raw = np.empty((batch, channels, window))
    for b in range(batch):
        for c in range(channels):
            phase = rng.uniform(0, 2 * math.pi)
            period = rng.uniform(8, window)
            wave = np.sin(2 * math.pi * t / period + phase) + 0.3 * rng.standard_normal(window)
            raw[b, c] = center[c] + scale[c] * wave
    mask = np.ones((batch, channels, window), dtype=bool)
    mask[0, 0, 5:9] = False  # a short gap
    mask[0, channels - 1, ::7] = False  # scattered drop-outs
    if batch > 1:
        mask[1, 1, :] = False  # a channel missing for the whole window
    if batch > 2:
        mask[2] = rng.uniform(size=(channels, window)) > 0.2
    raw = np.where(mask, raw, 0.0)  # the windower stores 0.0 where the mask is false
    return raw, mask, center, scale


def score_path(model, raw, mask, center, scale, prefix):
    """The scoring path: normalise, decode the posterior mean, masked squared error."""
    raw_t = torch.tensor(raw, dtype=torch.float32)
    mask_t = torch.tensor(mask, dtype=torch.float32)
    center_t = torch.tensor(center, dtype=torch.float32)[None, :, None]
    scale_t = torch.tensor(scale, dtype=torch.float32)[None, :, None]
    x = ((raw_t - center_t) / scale_t) * mask_t
    recon, mu, logvar = model.forward_mean(x)
    err = (recon - x) ** 2 * mask_t
    present = mask_t.sum(dim=(1, 2))
    channel_errors = err.sum(dim=2) / present[:, None]
    score = err.sum(dim=(1, 2)) / present
    return {
        f"{prefix}.raw": raw_t,
        f"{prefix}.mask": mask_t,
        f"{prefix}.center": center_t.flatten(),
        f"{prefix}.scale": scale_t.flatten(),
        f"{prefix}.input": x,
        f"{prefix}.mu": mu,
        f"{prefix}.logvar": logvar,
        f"{prefix}.recon": recon,
        f"{prefix}.score": score,
        f"{prefix}.channel_errors": channel_errors,
    }


def weight_gradients(model, x, rng):
    """Gradients of a fixed random linear functional of (reconstruction, mu, logvar) with respect
    to every weight, so the Rust backward pass (used in training) can be checked too."""
    with torch.enable_grad():
        model.zero_grad()
        recon, mu, logvar = model.forward_mean(x)
        g_recon = torch.tensor(rng.standard_normal(tuple(recon.shape)), dtype=torch.float32)
        g_mu = torch.tensor(rng.standard_normal(tuple(mu.shape)), dtype=torch.float32)
        g_logvar = torch.tensor(rng.standard_normal(tuple(logvar.shape)), dtype=torch.float32)
        loss = (recon * g_recon).sum() + (mu * g_mu).sum() + (logvar * g_logvar).sum()
        loss.backward()
    grads = {f"grad.{k}": p.grad.detach().clone() for k, p in model.named_parameters()}
    grads.update({"grad.g_recon": g_recon, "grad.g_mu": g_mu, "grad.g_logvar": g_logvar})
    return grads


def main():
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    for seed, (name, cfg) in enumerate(sorted(CONFIGS.items()), start=17):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = ReferenceVae(**cfg).eval()
        weights = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
        save_file(weights, OUT_DIR / f"{name}_weights.safetensors",
                  metadata={"config": json.dumps(cfg)})

        golden = {}
        # The layer chain runs at batch 1 for the (large) default model to keep the files small,
        # at batch 2 for the small one; the whole-forward goldens cover batch 1 and 3 for both.
        layer_batch = 1 if name == "default" else 2
        x = torch.tensor(rng.standard_normal((layer_batch, cfg["channels"], cfg["window"])),
                         dtype=torch.float32)
        layers = model.layers(x)
        golden.update({k: v.clone().contiguous() for k, v in layers})
        for batch in (1, 3):
            raw, mask, center, scale = raw_windows(rng, batch, cfg["channels"], cfg["window"])
            golden.update(score_path(model, raw, mask, center, scale, f"b{batch}"))
        if name == "small":
            golden.update(weight_gradients(model, x, rng))
        golden = {k: v.to(torch.float32).contiguous() for k, v in golden.items()}
        save_file(golden, OUT_DIR / f"{name}_golden.safetensors",
                  metadata={"config": json.dumps(cfg),
                            "layer_order": json.dumps([k for k, _ in layers]),
                            "torch_version": torch.__version__})
        n_params = sum(v.numel() for v in weights.values())
        print(f"{name}: {n_params} weights, {len(golden)} golden tensors")


if __name__ == "__main__":
    main()
