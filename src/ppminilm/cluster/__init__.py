"""Cluster-facing pieces: images, node pools, object-store secret names, the PaddleJob.

* :mod:`.platform` -- one image constant per image and one description per GPU node pool,
  shared by ``images/``, ``manifests/``, ``components/`` and ``pipelines/``.
* :mod:`.paddlejob` -- the Training Operator ``PaddleJob`` for multi-node distillation.
"""
