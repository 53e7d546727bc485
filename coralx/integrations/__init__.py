"""Training frameworks writing to coralx: thin adapters over the tracker and the store.

* :mod:`coralx.integrations.lightning`: ``CoralxLogger``, a PyTorch Lightning logger;
* :mod:`coralx.integrations.transformers`: ``CoralxCallback``, a Hugging Face
  ``TrainerCallback``.

Each module imports its framework, so import the one you use:

>>> from coralx.integrations.lightning import CoralxLogger
"""
