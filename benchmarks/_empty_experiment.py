"""The experiment bench_sweep.py runs: an empty function in a module that imports only coralx,
so what a child process pays is the runner's own cost."""

import coralx


@coralx.experiment(name="bench-empty")
def empty(config: coralx.Config) -> None:
    return None
