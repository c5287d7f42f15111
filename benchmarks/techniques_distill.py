"""Knowledge distillation on digits: a thin ResNet-18 student with and without the teacher's soft
targets, over seeds, plus the student's speed relative to the teacher (measured in each run).

    python benchmarks/techniques_distill.py --teacher runs/r18      # a resnet18 saved by the vision recipe
    python benchmarks/techniques_distill.py                          # trains that teacher first (seed 0)

Each run is ``python -m zoo.techniques.distill`` on one thread; ``--alpha 0`` is the same student,
same recipe and seed, trained on the hard labels alone. Prints a markdown table (mean ± std).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from techniques_common import run_commands, table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default=None, help="save_pretrained directory of the teacher (default: train one)")
    p.add_argument("--student", default="resnet18")
    p.add_argument("--student-width", default="8", help="the student's base_channels ('' for the full width)")
    p.add_argument("--temperature", default="4")
    p.add_argument("--alpha", default="0.9")
    p.add_argument("--feature-layers", default=None,
                   help="S:T, adds a third arm: KD plus feature distillation between these modules")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="/tmp/techniques_distill")
    p.add_argument("--reuse", action="store_true", help="keep the runs whose logs already hold their summary")
    args = p.parse_args()
    out = Path(args.out)
    teacher = args.teacher
    if teacher is None:
        teacher = str(out / "teacher")
        subprocess.check_call([sys.executable, "-m", "zoo.vision.train", "--model", "resnet18", "--no-progress",
                               "--save-model", teacher], env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    base = ["zoo.techniques.distill", "--teacher", teacher, "--student", args.student, "--no-progress",
            "--temperature", args.temperature]
    if args.student_width:
        base += ["--student-width", args.student_width]
    arms = [("kd", ["--alpha", args.alpha]), ("alone", ["--alpha", "0"])]
    if args.feature_layers:
        arms.append(("kd_features", ["--alpha", args.alpha, "--feature-layers", args.feature_layers]))
    runs = [(arm, s, [*base, *extra, "--seed", str(s)]) for s in args.seeds for arm, extra in arms]
    results = run_commands(runs, out / "logs", args.jobs, args.reuse)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    width = f" (base_channels {args.student_width})" if args.student_width else ""
    print(f"\nstudent {args.student}{width}, teacher {teacher} (test accuracy {100 * results[0]['teacher/acc']:.2f}%), "
          f"{len(args.seeds)} seeds, test accuracy %:")
    print(table(results, [("kd", f"student + KD (T={args.temperature}, alpha={args.alpha})"),
                          ("kd_features", f"student + KD + features {args.feature_layers} (MSE, beta 1)"),
                          ("alone", "student alone")], [("test/acc", "test accuracy")]))
    ratios = [r["speed_ratio"] for r in results]
    print(f"student / teacher inference images/s (batch 256, 1 thread, per run): mean {sum(ratios) / len(ratios):.1f}x "
          f"(min {min(ratios)}, max {max(ratios)})")


if __name__ == "__main__":
    main()
