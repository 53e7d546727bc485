"""Importers: runs kept by other trackers, brought into a coralx store.

>>> from coralx.importers.mlflow import import_mlflow
>>> import_mlflow(repo, "mlruns/").imported
"""
