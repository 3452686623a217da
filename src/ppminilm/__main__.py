"""``python -m ppminilm`` runs the CLI (used by ``paddle.distributed.launch -m``)."""

from ppminilm.cli import main

raise SystemExit(main())
