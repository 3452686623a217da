"""PP-MiniLM compression recipe as a library: data, models, distillation, fine-tuning,
pruning, quantization, inference and reporting. No Kubeflow imports live here."""

# paddle 2.6 exports its own zlib symbols; zlib must be loaded before paddle is (see
# ppminilm.compat.paddle). Importing any ppminilm module runs this first, whatever the import
# order inside that module, so the package is safe even where isort moves paddlenlp imports
# above ours.
import zlib  # noqa: F401

__version__ = "0.1.0"
