"""generative domain: models and recipes arrive with their own issues."""
