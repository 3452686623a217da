"""Build tooling of the project's images (``make images``); not shipped in any image.

* :mod:`.spec` -- what each image is: runtime base, system packages, Python requirements, the
  library-check profile, and the digest of the sources an image is built from.
* :mod:`.lock` -- the committed hash-pinned lock of each image (``python -m images.lock``).
* :mod:`.wheelhouse` -- the host-made, hash-verified wheelhouse an image installs from.
* :mod:`.build` -- the builds: runtime image, build context, ``docker build``, SBOM, sizes, push.
* :mod:`.sbom` -- CycloneDX SBOM of an installed environment (runs inside the image at build).

``Dockerfile`` (the Python layer, shared by every image) and ``runtime/Dockerfile`` (the OS
layer) are the only Dockerfiles; ``<name>/requirements.lock`` is each image's lock.
"""
