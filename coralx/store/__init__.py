"""The weight store: content-addressed, deduplicated, delta-compressed tensor chunks.

It knows nothing of commits or experiments. ``tensors`` (dtype table, chunking), ``codecs``
(byte planes + zstd, deltas), ``base`` (the :class:`~coralx.store.base.ChunkStore`
interface, the cache of decoded delta bases) with ``disk`` and ``memory``, ``manifest``
(tensor -> chunks), ``weights`` (the write and read engine), ``reader`` (a commit's tensors
as a read-only mapping). Import the submodules; this package imports nothing heavy itself.
"""

__all__: list[str] = []
