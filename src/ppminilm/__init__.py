"""PP-MiniLM compression recipe as a library: data, models, distillation, fine-tuning,
pruning, quantization, inference and reporting. No Kubeflow imports live here."""

__version__ = "0.1.0"
