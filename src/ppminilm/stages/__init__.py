"""The recipe's stages, one module or package each; the math of a stage lives here only.

=========================  ==========================================================
stage                      module
=========================  ==========================================================
teacher (local profile)    :mod:`.teacher` -- MLM pre-training of the local teacher
1 general distillation     :mod:`.distill` -- MiniLMv2 + sample relations
2 fine-tuning, grid        :mod:`.finetune`, :mod:`.grid`
3 OFA width pruning        :mod:`.prune` -- importance, reordering, OFA distillation
4 post-training INT8       :mod:`.quantize`
5 inference benchmark      :mod:`ppminilm.inference`
=========================  ==========================================================

Each stage's entry point takes paths and its config and returns its typed result; the stage
runner (:mod:`ppminilm.runner`) resolves configs and lays out artifacts for the CLI and KFP.
"""

from ppminilm._lazy import lazy_exports

__all__ = [
    "run_distill",
    "run_finetune",
    "run_grid",
    "run_pretrain_teacher",
    "run_prune",
    "run_quantize",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "run_pretrain_teacher": "teacher",
        "run_distill": "distill",
        "run_finetune": "finetune",
        "run_grid": "grid",
        "run_prune": "prune",
        "run_quantize": "quantize",
    },
)
