"""Stage 1, general distillation: MiniLMv2 Q/K/V relations plus PP-MiniLM sample relations.

* :mod:`.relations` -- the relation losses (token, head and sample relations, padding masked).
* :mod:`.train` -- the training loop: teacher/student, AMP, checkpoints, resume.
"""

from ppminilm._lazy import lazy_exports

__all__ = ["load_teacher", "relation_distill_loss", "run_distill"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "run_distill": "train",
        "load_teacher": "train",
        "relation_distill_loss": "relations",
    },
)
