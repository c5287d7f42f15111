"""Sample quality of the generative models, measured with the zoo's own digits classifiers.

    # 1. the feature networks: resnet18 trained on digits by the vision recipe (about 99% test accuracy),
    #    one per seed: the scores move with the judge, so several judges score the same images
    for s in 0 1 2 3; do OMP_NUM_THREADS=1 python -m zoo.vision.train --model resnet18 --seed $s --save-model runs/judge$s; done
    # 2. models trained by the generative recipe (OUTPUT_DIR/model)
    python -m zoo.generative.train --model dcgan --output-dir runs/generative/dcgan
    # 3. the scores (seeds stated in the output)
    OMP_NUM_THREADS=1 python benchmarks/generative_quality.py --classifier runs/judge0 --classifier runs/judge1 \\
        --run dcgan=runs/generative/dcgan/model --run ddpm=runs/generative/ddpm/model:ddim50 --n 1000

There is no Inception network offline, so the classifier stands in for it:

- Fréchet distance between Gaussian fits of its penultimate features (the 512-d pooled features
  before the last linear layer) of ``--n`` generated images and of the held-out real digits (the
  vision recipe's 450-image test split, which neither the classifier nor the generators saw); beside
  it the real-vs-real floor: the training images against the same held-out images;
- the classifier's view of the samples: the share it classifies with confidence >= 0.9, the
  class histogram, its total-variation distance from uniform, the largest class's share relative
  to 1/10 and the number of classes present (mode collapse shows there);
- for a VAE, the test negative log-likelihood (IWAE bound, k = ``--iwae-k``) in nats per image.

A run is ``label=DIR[:SAMPLER]``: a diffusion model samples with the full DDPM chain (``ddpm``) or
DDIM with N steps (``ddimN``). ``--save-samples FILE`` keeps every run's images (uint8) and
``--from-samples FILE`` scores them again, with other judges say, without sampling. Images smaller
than a judge's input (a model trained at the digits' native 8x8) are enlarged to it bilinearly, the
same operation that made the real digits the judge compares them with.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of Gaussian fits to the rows of a and b;
    the trace of the matrix square root is computed from the eigenvalues of S_a^(1/2) S_b S_a^(1/2),
    which is symmetric, so it stays real."""
    from scipy.linalg import eigh

    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = eigh(root_a @ cov_b @ root_a, eigvals_only=True)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


class Judge:
    """The digits classifier: penultimate features and class probabilities of [0, 1] images."""

    def __init__(self, directory: str, device: str = "cpu"):
        from zoo.shared.factory import from_pretrained

        import zoo.vision  # noqa: F401  (registers resnet18)

        self.device = torch.device(device)
        self.model = from_pretrained(directory).eval().to(self.device)
        cfg = self.model.pretrained_cfg
        self.mean, self.std = float(cfg["mean"][0]), float(cfg["std"][0])
        self.size = cfg["input_size"][-1]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        feats, probs = [], []
        for chunk in images.split(250):
            chunk = chunk.to(self.device)
            if chunk.shape[-1] != self.size:
                chunk = torch.nn.functional.interpolate(chunk, size=(self.size, self.size), mode="bilinear",
                                                        align_corners=False)
            h = self.model.forward_features((chunk - self.mean) / self.std)  # once, for both heads
            feats.append(self.model.forward_head(h, pre_logits=True).cpu())
            probs.append(self.model.forward_head(h).softmax(-1).cpu())
        return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def classifier_view(probs: np.ndarray) -> dict:
    counts = np.bincount(probs.argmax(1), minlength=probs.shape[1])
    share = counts / counts.sum()
    uniform = 1 / probs.shape[1]
    return {"confident_share": float((probs.max(1) >= 0.9).mean()), "class_counts": counts.tolist(),
            "tv_from_uniform": float(0.5 * np.abs(share - uniform).sum()),
            "max_class_share_x_uniform": float(share.max() / uniform), "classes_present": int((counts > 0).sum())}


def sample_run(spec: str, n: int, seed: int, device: str = "cpu", chunk: int = 250) -> tuple[str, torch.Tensor, dict]:
    from zoo.generative.diffusion import NoiseSchedule
    from zoo.generative.sample import sample_images
    from zoo.generative.unet import UNet2D
    from zoo.shared.factory import from_pretrained

    label, _, rest = spec.partition("=")
    directory, _, sampler = rest.partition(":")
    model = from_pretrained(directory).eval()
    steps = None
    info = {"dir": directory, "architecture": model.zoo_name}
    schedule = None
    if isinstance(model, UNet2D):
        schedule = NoiseSchedule.load(directory)
        sampler = sampler or "ddpm"
        steps = None if sampler == "ddpm" else int(sampler.removeprefix("ddim"))
        info["sampler"] = f"DDPM {schedule.num_train_timesteps} steps" if steps is None else f"DDIM {steps} steps, eta 0"
    start = time.perf_counter()
    images = torch.cat([sample_images(model, min(chunk, n - i), steps=steps, seed=seed + i, schedule=schedule,
                                      device=device) for i in range(0, n, chunk)])
    info["sampling_seconds"] = round(time.perf_counter() - start, 1)
    return label, images, info


def judge_real(directory: str, device: str) -> tuple[Judge, dict, np.ndarray]:
    """A judge, its view of the real digits (test accuracy, the train-vs-held-out floor, the held-out
    images' classifier view) and its features of the held-out images."""
    from zoo.generative.data import load_digits

    judge = Judge(directory, device)
    digits = load_digits(judge.size)
    real_train, _ = judge(digits.train)
    real_test, test_probs = judge(digits.test)
    view = {"classifier": directory,
            "test_accuracy": float((test_probs.argmax(1) == digits.test_labels.numpy()).mean()),
            "fd_floor_train_vs_test": frechet_distance(real_train, real_test), "real_test": classifier_view(test_probs)}
    print(f"judge {directory}: test accuracy {view['test_accuracy']:.4f}; Fréchet floor (train {len(real_train)} "
          f"vs held-out {len(real_test)}): {view['fd_floor_train_vs_test']:.3f}")
    return judge, view, real_test


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classifier", action="append", required=True,
                   help="save_pretrained directory of a digits resnet18; repeatable: every judge scores the same "
                        "images, and the table gives each judge's FD / floor")
    p.add_argument("--run", action="append", default=[], help="label=MODEL_DIR[:ddpm|ddimN], repeatable")
    p.add_argument("--n", type=int, default=1000, help="generated images per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iwae-k", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="where the generators sample and the classifier runs")
    p.add_argument("--chunk", type=int, default=250, help="images sampled per call (the seed moves with each)")
    p.add_argument("--save-samples", default=None, help="also save every run's images as uint8 tensors in one .pt")
    p.add_argument("--from-samples", default=None,
                   help="score the images a --save-samples file holds (each label a run) instead of sampling")
    p.add_argument("--grid-dir", default=None, help="also write a 8x8 grid of each run's first samples here")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from zoo.generative.data import load_digits

    judges = [judge_real(directory, args.device) for directory in args.classifier]
    report = {"judges": [view for _, view, _ in judges], "n": args.n, "seed": args.seed, "threads": args.threads,
              "runs": {}}

    def runs():  # (label, images in [0, 1], info): a --from-samples file's, then each --run's
        saved = torch.load(args.from_samples, weights_only=True) if args.from_samples else {}
        for label, pixels in saved.items():
            yield label, pixels.float() / 255, {"architecture": "saved", "sampler": "saved samples",
                                                "sampling_seconds": "-"}
        for spec in args.run:
            yield sample_run(spec, args.n, args.seed, args.device, args.chunk)

    samples = {}
    for label, images, info in runs():
        samples[label] = (images * 255).round().to(torch.uint8)
        row = {**info, "scores": []}  # one per judge, in --classifier order
        for judge, view, real_test in judges:
            feats, probs = judge(images)
            fd = frechet_distance(feats, real_test)
            row["scores"].append({"fd": fd, "fd_over_floor": fd / view["fd_floor_train_vs_test"],
                                  **classifier_view(probs)})
        row["fd_over_floor_max"] = max(score["fd_over_floor"] for score in row["scores"])
        if info["architecture"].startswith("vae"):
            from zoo.shared.factory import from_pretrained

            vae = from_pretrained(info["dir"]).eval().to(args.device)
            row["test_nll_iwae"] = vae.test_nll(load_digits(vae.img_size).test, args.iwae_k, seed=args.seed)  # its size
            row["iwae_k"] = args.iwae_k
        if args.grid_dir:
            from zoo.generative.grid import save_grid

            row["grid"] = str(save_grid(images[:64], Path(args.grid_dir) / f"generative_{label}.png", nrow=8))
        report["runs"][label] = row
        print(json.dumps({label: row}), flush=True)
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.save_samples:
        torch.save(samples, args.save_samples)
    return report


def print_table(report: dict) -> None:
    """Markdown: per run, each judge's FD / floor and the worst of them; the first judge's confident share
    and TV distance; the fewest classes present and the largest class share any judge saw."""
    judges = report["judges"]
    heads = " | ".join(f"FD / floor, judge {i + 1}" for i in range(len(judges)))
    print(f"\n| model | sampler | {heads} | worst | confident >= 0.9 | classes present | max class share / uniform "
          f"| TV from uniform | sampling s |\n|---|---|{'---|' * len(judges)}---|---|---|---|---|---|")
    for label, r in report["runs"].items():
        scores = r["scores"]
        ratios = " | ".join(f"{s['fd']:.2f} ({s['fd_over_floor']:.2f}x)" for s in scores)
        classes = min(s["classes_present"] for s in scores)
        largest = max(s["max_class_share_x_uniform"] for s in scores)
        print(f"| {label} | {r.get('sampler', 'one pass')} | {ratios} | {r['fd_over_floor_max']:.2f}x | "
              f"{scores[0]['confident_share']:.3f} | {classes} | {largest:.2f} | {scores[0]['tv_from_uniform']:.3f} | "
              f"{r['sampling_seconds']} |")
    floors = " | ".join(f"floor {j['fd_floor_train_vs_test']:.2f}" for j in judges)
    real = judges[0]["real_test"]
    print(f"| real held-out digits | - | {floors} | 1.00x | {real['confident_share']:.3f} | {real['classes_present']} | "
          f"{real['max_class_share_x_uniform']:.2f} | {real['tv_from_uniform']:.3f} | - |")
    print("judges: " + "; ".join(f"{i + 1}. {j['classifier']} ({100 * j['test_accuracy']:.2f}%)"
                                 for i, j in enumerate(judges)))


if __name__ == "__main__":
    main()
