"""Training helpers shared by the stages: optimizer, batching, evaluation, checkpoints.

* :mod:`.loop` -- AdamW with linear warm-up, batch iteration, logits, accuracy, step logging.
* :mod:`.checkpoint` -- atomic, resumable checkpoints (local or object storage) and the
  SIGTERM guard that turns pre-emption into a checkpoint.
"""

from ppminilm._lazy import lazy_exports

__all__ = ["PreemptionGuard", "StepLogger", "make_optimizer", "save_checkpoint"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "StepLogger": "loop",
        "make_optimizer": "loop",
        "PreemptionGuard": "checkpoint",
        "save_checkpoint": "checkpoint",
    },
)
