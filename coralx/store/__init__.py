"""The weight store: content-addressed, deduplicated, delta-compressed tensor chunks.

It knows nothing of commits or experiments. ``tensors`` (dtype table, chunking), ``codecs``
(byte planes + zstd, deltas), ``base`` (the :class:`~coralx.store.base.ChunkStore`
interface) with ``disk`` and ``memory``, ``manifest`` (tensor -> chunks), ``weights`` (the
write and read engine), ``compaction`` (replaced chunks turned into deltas behind the
commit). Import the submodules; this package imports nothing heavy itself.
"""

__all__: list[str] = []
