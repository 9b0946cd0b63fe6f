#!/usr/bin/env python3
"""Scoring throughput of vaewatch against PyTorch and ONNX Runtime, measured in one run on the
same architecture, weights, batch size and thread count, printed as ratios.

Each engine scores the same kind of batch: raw windows [B, C, W] are normalised with the model's
per-channel center and scale, the conv-VAE runs on the posterior mean, and the per-channel mean
squared error of the reconstruction comes out with the latent mean and log-variance. vaewatch
runs `vaewatch model bench` (its daemon's scoring path, which also applies the mask and the
channel calibration; `--scoring reconstruction` for one forward pass like the others, and the
model's own mode, cross-channel scoring, for what the daemon really spends). PyTorch runs the
independent reference network of `scripts/torch_reference.py` with the model's weights loaded
from `model.safetensors`; ONNX Runtime runs that network exported to ONNX.

Usage:
    scripts/bench_scoring.py [--vaewatch target/release/vaewatch] [--model models/default]
        [--threads N] [--batch 256] [--windows 8192] [--device cpu|cuda]

CPU: every engine gets N threads (RAYON_NUM_THREADS for vaewatch, torch.set_num_threads,
ONNX Runtime's intra-op threads). cuda: needs a vaewatch built with `--features cuda`
(scripts/build_cuda.sh), PyTorch with CUDA, and onnxruntime-gpu for the ONNX Runtime row (left
out, and said so, without its CUDA provider).

Needs: numpy, torch, safetensors, onnx and onnxruntime (`pip install -r scripts/bench-requirements.txt`).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_reference import ReferenceVae  # noqa: E402


class Scoring(nn.Module):
    """Normalise, reconstruct from the posterior mean, per-channel mean squared error."""

    def __init__(self, vae, center, scale):
        super().__init__()
        self.vae = vae
        self.register_buffer("center", center.reshape(1, -1, 1))
        self.register_buffer("scale", scale.reshape(1, -1, 1))

    def forward(self, raw):
        x = (raw - self.center) / self.scale
        recon, mu, logvar = self.vae.forward_mean(x)
        return ((recon - x) ** 2).mean(dim=2), mu, logvar


def load_model(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    vae = ReferenceVae(**manifest["architecture"])
    vae.load_state_dict(load_file(str(model_dir / "model.safetensors")), strict=True)
    norms = manifest["normalisation"]["channels"]
    center = torch.tensor([n["center"] for n in norms], dtype=torch.float32)
    scale = torch.tensor([n["scale"] for n in norms], dtype=torch.float32)
    return manifest, Scoring(vae, center, scale).eval()


def synthetic_batches(manifest, batch, count, seed=1):
    """`count` batches of raw windows wandering about one scale around the centers."""
    rng = np.random.default_rng(seed)
    arch = manifest["architecture"]
    c, w = arch["channels"], arch["window"]
    norms = manifest["normalisation"]["channels"]
    center = np.array([n["center"] for n in norms], dtype=np.float32).reshape(1, c, 1)
    scale = np.array([n["scale"] for n in norms], dtype=np.float32).reshape(1, c, 1)
    out = []
    for _ in range(count):
        level = np.cumsum(rng.normal(0, 0.3, size=(batch, c, w)), axis=2) * 0.2
        out.append((center + scale * level).astype(np.float32))
    return out


def timed(run, batches, windows):
    """Windows per second of `run` over `windows` windows, after one untimed warm-up call."""
    run(batches[0])
    done, started, i = 0, time.perf_counter(), 0
    while done < windows:
        run(batches[i % len(batches)])
        done += batches[0].shape[0]
        i += 1
    return done / (time.perf_counter() - started)


def bench_torch(model, batches, windows, device):
    """Like vaewatch and ONNX Runtime, each call takes host memory in and gives host memory out
    (on a GPU: the copies both ways are timed)."""
    model = model.to(device)

    def run(batch):
        with torch.inference_mode():
            out = model(torch.from_numpy(batch).to(device))
            return [o.cpu() for o in out]

    return timed(run, batches, windows)


def bench_onnx(model, batches, windows, threads, device, work):
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return None, "onnxruntime has no CUDA provider here (install onnxruntime-gpu)"
        providers = ["CUDAExecutionProvider"]
    path = str(work / "vae.onnx")
    example = torch.from_numpy(batches[0])
    export = dict(input_names=["raw"], output_names=["channel_mse", "mu", "logvar"],
                  dynamic_axes={"raw": {0: "batch"}}, opset_version=17)
    try:
        torch.onnx.export(model.cpu(), (example,), path, dynamo=False, **export)
    except TypeError:  # a torch without the `dynamo` argument
        torch.onnx.export(model.cpu(), (example,), path, **export)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=providers)
    check = session.run(None, {"raw": batches[0]})[0]
    with torch.inference_mode():
        expected = model.cpu()(example)[0].numpy()
    error = float(np.max(np.abs(check - expected) / (1.0 + np.abs(expected))))
    rate = timed(lambda b: session.run(None, {"raw": b}), batches, windows)
    return rate, f"ONNX output vs PyTorch: largest relative difference {error:.1e}"


def bench_vaewatch(binary, model_dir, windows, batch, threads, device, scoring):
    command = [binary, "model", "bench", str(model_dir), "--windows", str(windows),
               "--batch", str(batch), "--scoring", scoring]
    if device == "cpu":
        command.append("--cpu")
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    if report["device"] != device:
        raise SystemExit(f"vaewatch scored on {report['device']}, not {device}")
    return report["windows_per_second"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vaewatch", default="target/release/vaewatch")
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--windows", type=int, default=8192)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = ap.parse_args()
    model_dir = Path(args.model)
    torch.set_num_threads(args.threads)
    manifest, model = load_model(model_dir)
    batches = synthetic_batches(manifest, args.batch, 8)
    arch = manifest["architecture"]
    print(f"model {manifest['model_id']}: C={arch['channels']} W={arch['window']} "
          f"latent {arch['latent']}; batch {args.batch}, {args.windows} windows, "
          f"device {args.device}, {args.threads} threads; torch {torch.__version__}")

    rows = []
    recon = bench_vaewatch(args.vaewatch, model_dir, args.windows, args.batch, args.threads,
                           args.device, "reconstruction")
    rows.append(("vaewatch, reconstruction (one forward pass)", recon))
    rows.append(("PyTorch", bench_torch(model, batches, args.windows, args.device)))
    with tempfile.TemporaryDirectory() as work:
        rate, note = bench_onnx(model, batches, args.windows, args.threads, args.device,
                                Path(work))
    print(note)
    if rate is not None:
        rows.append(("ONNX Runtime", rate))
    own = manifest.get("scoring", "reconstruction")
    if own != "reconstruction":
        rate = bench_vaewatch(args.vaewatch, model_dir, args.windows, args.batch, args.threads,
                              args.device, "model")
        rows.append((f"vaewatch, the model's own {own} scoring", rate))

    print(f"{'engine':48} {'windows/s':>11} {'vaewatch reconstruction / this':>32}")
    for name, rate in rows:
        print(f"{name:48} {rate:11.0f} {recon / rate:31.2f}x")


if __name__ == "__main__":
    main()
