"""Training techniques on the shared core: knowledge distillation, SimCLR, domain-adversarial training.

- :mod:`zoo.techniques.distill`: Hinton's soft-target loss and feature distillation, ``zoo distill``.
- :mod:`zoo.techniques.simclr` (NT-Xent, projection head, gradient cache, linear probe) and
  :mod:`zoo.techniques.pretrain`, ``zoo pretrain simclr NAME``.
- :mod:`zoo.techniques.dann` (gradient reversal, the paper's schedules, shifted digits) and
  :mod:`zoo.techniques.train`, ``zoo train dann``.

Each recipe drives ``zoo.shared.training.Trainer`` with a task object and builds its networks from
the registry; nothing here is imported by ``import zoo``.
"""
