"""The training configuration: one flat dataclass of plain values.

Every field is a bool, int, float, str or None, so the whole config is stored
inside checkpoints as a plain dict (loadable with ``torch.load(weights_only=True)``)
and can be filled from argparse / JSON without conversion.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InvalidConfigError

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "constant", "step", "onecycle")
NAN_POLICIES = ("raise", "skip")
AMP_DTYPES = {"float16": "float16", "fp16": "float16", "half": "float16",
              "bfloat16": "bfloat16", "bf16": "bfloat16"}


@dataclass
class TrainConfig:
    # --- length ---
    epochs: int = 10
    max_steps: int | None = None  # cap on optimizer steps; also shortens the LR schedule (the run
    #                               length of a streaming dataset, which has no epoch length)

    # --- data ---
    batch_size: int = 64  # per process (under torchrun the global batch is batch_size * world_size)
    eval_batch_size: int | None = None  # defaults to batch_size
    num_workers: int = 0
    shuffle: bool = True  # seeded per-epoch permutation (seed + epoch), identical on every rank
    drop_last: bool = False  # drop the last incomplete training batch

    # --- optimizer ---
    optimizer: str = "adamw"  # "adamw" | "sgd" | "adam"
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9  # SGD momentum
    beta1: float = 0.9  # Adam / AdamW betas and eps
    beta2: float = 0.999
    eps: float = 1e-8
    decay_norm_and_bias: bool = False  # False: 1-D params (biases, norm scales) get no weight decay

    # --- schedule (stepped once per optimizer step) ---
    scheduler: str = "cosine"  # "cosine" (warmup + cosine to min_lr) | "constant" | "step" | "onecycle"
    warmup_steps: int = 0
    warmup_epochs: float = 0.0  # converted to steps; the larger of the two warmups wins
    min_lr: float = 0.0
    step_size_epochs: float = 30.0  # "step": multiply the LR by step_gamma every this many epochs
    step_gamma: float = 0.1

    # --- optimization details ---
    grad_accum_steps: int = 1
    clip_grad_norm: float | None = None
    amp: bool | str = "auto"  # "auto": fp16 + GradScaler on CUDA, off elsewhere; True on CPU: bf16 autocast;
    #                           a dtype name ("bf16", "fp16") means True with that dtype
    amp_dtype: str | None = None  # "float16"/"fp16" or "bfloat16"/"bf16" overrides the default dtype
    ema_decay: float | None = None
    ema_warmup: bool = False  # ramp the EMA decay up as min(decay, (1 + t) / (10 + t)) (diffusion training)
    ema_eval: bool = True  # evaluate (and pick the best model) with the EMA weights when EMA is on

    # --- early stopping / best model ---
    early_stopping_patience: int | None = None  # evaluations without improvement before stopping
    monitor: str | None = None  # metric that picks the best model; None: the task's ``monitor`` (if any)
    monitor_mode: str | None = None  # "max" | "min"; None: the task's (or "max" for a named monitor)
    restore_best: bool = True  # with early stopping: load the best weights when training ends

    # --- environment ---
    device: str = "auto"  # "auto" (cuda > mps > cpu), or any torch device string
    seed: int = 0
    deterministic: bool = False

    # --- outputs ---
    output_dir: str | None = None  # last.pt, best.pt, metrics.csv, tensorboard/, curves.png
    checkpoint_every: int | None = None  # optimizer steps; plus one at each epoch end
    resume: str | bool | None = None  # checkpoint path, or True = output_dir/last.pt if it exists
    log_every: int = 10  # optimizer steps between progress / TensorBoard updates
    progress: bool = True  # the progress bar (the per-evaluation metric lines stay; see verbose)
    verbose: bool = True  # print one metric line per evaluation
    tensorboard: bool = True
    plot: bool = True
    nan_policy: str = "raise"  # "raise" | "skip"
    check_grads: bool = False  # also check the gradient norm when not clipping (clipping always checks it)
    eval_every_epochs: int | None = 1  # None: no end-of-epoch evaluation
    eval_every_steps: int | None = None  # also evaluate (and checkpoint) every this many optimizer steps

    def __post_init__(self) -> None:
        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise InvalidConfigError(f"TrainConfig: {msg}")

        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1 or None, got {self.max_steps}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.grad_accum_steps >= 1, f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        check(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        check(self.scheduler in SCHEDULERS, f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        check(self.nan_policy in NAN_POLICIES, f"nan_policy must be one of {NAN_POLICIES}, got {self.nan_policy!r}")
        check(self.monitor_mode in (None, "max", "min"),
              f"monitor_mode must be 'max', 'min' or None, got {self.monitor_mode!r}")
        check(isinstance(self.amp, bool) or self.amp == "auto" or self.amp in AMP_DTYPES,
              f"amp must be a bool, 'auto' or a dtype name {sorted(AMP_DTYPES)}, got {self.amp!r}")
        check(self.amp_dtype is None or self.amp_dtype in AMP_DTYPES,
              f"amp_dtype must be None or one of {sorted(AMP_DTYPES)}, got {self.amp_dtype!r}")
        check(self.ema_decay is None or 0.0 <= self.ema_decay <= 1.0,
              f"ema_decay must be in [0, 1], got {self.ema_decay}")
        check(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        check(self.eval_every_epochs is None or self.eval_every_epochs >= 1,
              f"eval_every_epochs must be >= 1 or None, got {self.eval_every_epochs}")
        check(self.eval_every_steps is None or self.eval_every_steps >= 1,
              f"eval_every_steps must be >= 1 or None, got {self.eval_every_steps}")
        check(self.early_stopping_patience is None or self.early_stopping_patience >= 0,
              f"early_stopping_patience must be >= 0 or None, got {self.early_stopping_patience}")
        check(self.checkpoint_every is None or self.checkpoint_every >= 1,
              f"checkpoint_every must be >= 1 or None, got {self.checkpoint_every}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build a config from a dict, ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
