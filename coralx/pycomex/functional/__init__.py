"""``pycomex.functional``'s paths: ``coralx.pycomex.functional.experiment`` and ``.mixin``."""
