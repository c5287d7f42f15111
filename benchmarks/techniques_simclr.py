"""SimCLR on digits with the labels withheld during pretraining:

1. a linear probe (logistic regression on frozen features, C chosen on validation) on the SimCLR
   encoder, on a random encoder of the same architecture, and the test accuracy of the same
   network trained with every label (full supervision);
2. ``zoo finetune`` from the SimCLR encoder with 10% of the training labels against the same recipe
   from a random initialisation (training from scratch) on the same 10%, over seeds.

    python benchmarks/techniques_simclr.py                    # thin ResNet-18, 5 seeds
    python benchmarks/techniques_simclr.py --pretrained runs/simclr   # reuse an encoder

Every run is a recipe command on one thread (``python -m zoo.techniques.pretrain``,
``python -m zoo.vision.finetune``); the scratch arm starts from a saved random initialisation
(one per seed), so both arms go through the same recipe and differ only in their start.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from techniques_common import run_commands, table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--base-channels", default="16", help="'' for the full width")
    p.add_argument("--pretrain-epochs", default="60")
    p.add_argument("--pretrained", default=None, help="an encoder from zoo pretrain simclr (default: pretrain one)")
    p.add_argument("--label-fraction", default="0.1")
    p.add_argument("--finetune-epochs", default="30")
    p.add_argument("--finetune-batch", default="16")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="/tmp/techniques_simclr")
    p.add_argument("--reuse", action="store_true", help="keep the runs whose logs already hold their summary")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    import zoo
    from zoo.techniques.simclr import linear_probe
    from zoo.vision.data import load_digits

    width = ["--base-channels", args.base_channels] if args.base_channels else []
    kw = {"base_channels": int(args.base_channels)} if args.base_channels else {}
    encoder_dir = args.pretrained
    pre = {}
    if encoder_dir is None:
        encoder_dir = str(out / "simclr")
        pre = run_commands([("pretrain", 0, ["zoo.techniques.pretrain", "simclr", args.model, *width, "--epochs",
                                             args.pretrain_epochs, "--no-progress", "--save-model", encoder_dir])],
                           out / "logs", 1, args.reuse)[0]
    data = load_digits(32)
    for s in args.seeds:  # the scratch arm's starting points: random encoders saved like the SimCLR one
        torch.manual_seed(s)
        enc = zoo.create(args.model, num_classes=0, in_chans=1, **kw)
        enc.pretrained_cfg = data.pretrained_cfg()
        zoo.save_pretrained(enc, out / f"random_seed{s}")
    probes = {"SimCLR encoder": linear_probe(zoo.from_pretrained(encoder_dir), data),
              "random encoder": linear_probe(zoo.from_pretrained(out / f"random_seed{args.seeds[0]}"), data)}
    finetune = ["zoo.vision.finetune", "--model", args.model, "--no-progress", "--epochs", args.finetune_epochs,
                "--batch-size", args.finetune_batch]
    # full supervision: every label, the vision recipe's digits defaults (12 epochs, batch 64)
    runs = [("full_supervision", args.seeds[0], ["zoo.vision.finetune", "--model", args.model, "--no-progress",
                                                 "--pretrained", str(out / f"random_seed{args.seeds[0]}"),
                                                 "--seed", str(args.seeds[0])])]
    for s in args.seeds:
        few = ["--label-fraction", args.label_fraction, "--seed", str(s)]
        runs += [("simclr_finetune", s, [*finetune, "--pretrained", encoder_dir, *few]),
                 ("scratch", s, [*finetune, "--pretrained", str(out / f"random_seed{s}"), *few])]
    results = run_commands(runs, out / "logs", args.jobs, args.reuse)
    (out / "results.json").write_text(json.dumps({"pretrain": pre, "probes": probes, "runs": results}, indent=1))
    full = next(r for r in results if r["arm"] == "full_supervision")
    name = f"{args.model}" + (f" (base_channels {args.base_channels})" if args.base_channels else "")
    print(f"\n{name}, digits ({len(data.train)} training images), SimCLR pretraining {args.pretrain_epochs} epochs "
          f"without labels:")
    print("| encoder | linear probe test accuracy | C (chosen on val) |\n|---|---|---|")
    for label, r in probes.items():
        print(f"| {label} | {100 * r['probe/test_acc']:.2f} | {r['probe/C']} |")
    print(f"| full supervision (every label, trained end to end: 12 epochs, seed {full['seed']}) | "
          f"{100 * full['test/acc']:.2f} (test accuracy) | - |")
    print(f"\nfine-tuning with {float(args.label_fraction):.0%} of the labels, {args.finetune_epochs} epochs, "
          f"{len(args.seeds)} seeds, test accuracy %:")
    print(table(results, [("simclr_finetune", "from the SimCLR encoder"), ("scratch", "from scratch (random init)")],
                [("test/acc", "test accuracy")]))


if __name__ == "__main__":
    main()
