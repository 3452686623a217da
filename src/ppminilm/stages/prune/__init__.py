"""Stage 3, OFA width pruning (DynaBERT): importance, reordering, distillation, export.

* :mod:`.importance` -- head/neuron importance and the reordering that keeps outputs.
* :mod:`.ofa` -- the OFA supernet run that distils the fine-tuned model into the sub-network.
"""

from ppminilm._lazy import lazy_exports

__all__ = ["compute_importance", "reorder_heads_and_neurons", "run_prune"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "run_prune": "ofa",
        "compute_importance": "importance",
        "reorder_heads_and_neurons": "importance",
    },
)
