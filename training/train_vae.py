"""Train the small convolutional VAE of the VAE tab on faces or digits; writes weights/vae-<data>/.

    python -m training.train_vae --data digits      # sklearn's handwritten digits, about 3 minutes on 2 cores
    python -m training.train_vae --data faces       # faces sampled from the pretrained DCGAN, about 10 minutes

Writes model.safetensors, config.json and README.md (the model card with held-out metrics).
"""

from __future__ import annotations

import argparse

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data", choices=["faces", "digits"], required=True)
parser.add_argument("--epochs", type=int, default=None, help="default: 10 (faces), 100 (digits)")
parser.add_argument("--train-faces", type=int, default=6000, help="how many DCGAN faces to train on")
parser.add_argument("--held-out-faces", type=int, default=300)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--beta", type=float, default=1.0, help="weight of the KL term (1 = the plain ELBO)")
parser.add_argument("--latent-dim", type=int, default=None, help="default: 32 (faces), 12 (digits)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument(
    "--threads", type=int, default=1, help="torch CPU threads (1 measured fastest on a busy 2-core box)"
)
parser.add_argument("--out", default=None, help="default: weights/vae-<data>")

import json  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from pipelines.core.weights import WEIGHTS_DIR  # noqa: E402
from pipelines.vae.data import (  # noqa: E402
    FACES_HELD_OUT_SEED,
    FACES_TRAIN_SEED,
    FACES_TRUNCATION,
    HELD_OUT_DIGITS,
    ImageDataset,
    digits_dataset,
    faces_dataset,
)
from pipelines.vae.model import ConvVAE, ConvVAEConfig, elbo_loss  # noqa: E402


def evaluate(model: ConvVAE, data: ImageDataset, beta: float, seed: int) -> dict[str, float]:
    """Held-out ELBO terms (one seeded sample of z per image) and the pixel error of mean reconstructions."""
    model.eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        terms = elbo_loss(model, data.images, beta)
        mu, _ = model.encode(data.images)
        mse = torch.mean((model.decode(mu) - data.images) ** 2)
    model.train()
    return {
        "reconstruction_bce_per_image": round(terms.reconstruction.item(), 3),
        "kl_per_image": round(terms.kl.item(), 3),
        "negative_elbo_per_image": round((terms.reconstruction + terms.kl).item(), 3),
        "mean_reconstruction_mse_per_pixel": round(mse.item(), 5),
    }


def main() -> None:
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()

    if args.data == "digits":
        epochs = args.epochs or 100
        config = ConvVAEConfig(image_size=32, channels=1, latent_dim=args.latent_dim or 12, features=(32, 64, 128))
        train, held_out = digits_dataset("train"), digits_dataset("held_out")
        data_card = (
            f"`sklearn.datasets.load_digits`: 1,797 real handwritten digits (8x8, 0..16), upscaled bilinearly "
            f"to 32x32 in [0, 1]. A fixed shuffle (seed 0) keeps {HELD_OUT_DIGITS} digits out of training "
            f"for evaluation; {len(train.images)} train. Licence: BSD-3-Clause (scikit-learn; the data is the "
            f"UCI optical recognition of handwritten digits set, CC BY 4.0)."
        )
    else:
        epochs = args.epochs or 10
        config = ConvVAEConfig(image_size=64, channels=3, latent_dim=args.latent_dim or 32)
        print(f"sampling {args.train_faces} + {args.held_out_faces} faces from the DCGAN ...", flush=True)
        train = faces_dataset("train", args.train_faces)
        held_out = faces_dataset("held_out", args.held_out_faces)
        data_card = (
            f"Synthetic: {len(train.images)} 64x64 RGB faces sampled from the pretrained DCGAN of the "
            f"`gan-face-generate==1.1.1` pack (itself trained on DigiFace-1M, a synthetic research face "
            f"dataset), truncation {FACES_TRUNCATION}, latent seed {FACES_TRAIN_SEED}; {len(held_out.images)} "
            f"held-out faces from seed {FACES_HELD_OUT_SEED}. One generative model's output trains another: "
            f"this VAE learns the GAN's faces, artefacts included."
        )
    print(
        f"data ready in {time.time() - started:.0f} s: {len(train.images)} train, {len(held_out.images)} held out",
        flush=True,
    )

    model = ConvVAE(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = -(-len(train.images) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(args.seed)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train.images), generator=shuffle)
        total, total_kl = 0.0, 0.0
        for start in range(0, len(order), args.batch_size):
            batch = train.images[order[start : start + args.batch_size]]
            terms = elbo_loss(model, batch, args.beta)
            optimiser.zero_grad()
            terms.loss.backward()
            optimiser.step()
            scheduler.step()
            total += terms.loss.item() * len(batch)
            total_kl += terms.kl.item() * len(batch)
        count = len(order)
        print(
            f"epoch {epoch}/{epochs}  loss {total / count:.2f}  KL {total_kl / count:.2f}  "
            f"({time.time() - started:.0f} s)",
            flush=True,
        )

    metrics = evaluate(model, held_out, args.beta, args.seed)
    print("held out:", metrics, flush=True)
    out = Path(args.out) if args.out else WEIGHTS_DIR / f"vae-{args.data}"
    out.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, out / "model.safetensors")
    settings = {
        "data": args.data,
        "model": asdict(config),
        "training": {
            "epochs": epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "beta": args.beta,
            "seed": args.seed,
            "train_examples": len(train.images),
            "held_out_examples": len(held_out.images),
            "steps": epochs * steps_per_epoch,
            "minutes": round((time.time() - started) / 60, 1),
        },
        "held_out": metrics,
    }
    (out / "config.json").write_text(json.dumps(settings, indent=2) + "\n")
    parameters = sum(p.numel() for p in model.parameters())
    card = f"""# vae-{args.data}: a small convolutional VAE (GenAI Playground)

Written by `python -m training.train_vae --data {args.data}`; rerun it to reproduce these weights.

- **Model**: encoder of {len(config.features)} stride-2 convolutions {list(config.features)} -> mean and
  log-variance of a {config.latent_dim}-d Gaussian; decoder mirrors it with transposed convolutions.
  {parameters:,} parameters, {config.channels}x{config.image_size}x{config.image_size} images in [0, 1].
- **Data**: {data_card}
- **Loss**: binary cross-entropy summed over pixels + beta x KL(q(z|x) || N(0, I)), beta = {args.beta}
  (beta = 1 is the negative ELBO); the reparameterisation trick z = mu + sigma * eps.
- **Training**: {epochs} epochs ({epochs * steps_per_epoch} steps), batch {args.batch_size}, Adam lr {args.lr}
  with cosine decay, seed {args.seed}, {settings["training"]["minutes"]} minutes on this CPU ({args.threads} thread).
- **Held-out metrics** ({len(held_out.images)} images never trained on):
  reconstruction BCE {metrics["reconstruction_bce_per_image"]} per image, KL {metrics["kl_per_image"]} nats per image,
  negative ELBO {metrics["negative_elbo_per_image"]} per image; decoding the mean code gives a squared error of
  {metrics["mean_reconstruction_mse_per_pixel"]} per pixel (pixels in [0, 1]).
- **Licence**: the weights are released with this project. Intended for teaching, not for any decision about people.
"""
    (out / "README.md").write_text(card)
    print(f"wrote {out} in {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
