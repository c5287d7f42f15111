"""Training techniques on the shared core: knowledge distillation, SimCLR, domain-adversarial training."""
