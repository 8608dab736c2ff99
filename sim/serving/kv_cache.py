"""Paged KV-cache memory: fixed-size blocks (Kwon et al., vLLM/PagedAttention,
arXiv:2309.06180) and a prefix cache that keeps shared prefixes' blocks with
LRU eviction of the unreferenced ones (vLLM's automatic prefix caching;
SGLang's RadixAttention, Zheng et al., arXiv:2312.07104).

Block counts only: which physical block holds what does not change any cost.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class PrefixEntry:
    tokens: int  # shared tokens held, whole blocks only (a partial block is not shared)
    blocks: int
    refs: int = 0


class BlockManager:
    """Free/used block accounting with a watermark, plus the prefix cache."""

    def __init__(self, total_blocks: int, block_size: int, watermark: float = 0.01):
        self.total = int(total_blocks)
        self.block_size = int(block_size)
        self.free = self.total
        # vLLM keeps 1% of the blocks free on admission, so running sequences can grow before anyone is preempted
        self.watermark = int(watermark * self.total)
        self.prefixes: dict[int, PrefixEntry] = {}
        self._lru: OrderedDict[int, None] = OrderedDict()  # unreferenced prefixes, least recently used first
        self.evictions = 0

    def blocks_for(self, tokens: int) -> int:
        return -(-int(tokens) // self.block_size)

    @property
    def used(self) -> int:
        return self.total - self.free

    def _reclaim(self, n: int) -> bool:
        """Evict unreferenced prefixes, least recently used first, until ``n`` blocks are free."""
        while self.free < n and self._lru:
            pid, _ = self._lru.popitem(last=False)
            self.free += self.prefixes.pop(pid).blocks
            self.evictions += 1
        return self.free >= n

    def can_admit(self, n: int) -> bool:
        return self._reclaim(n + self.watermark)

    def allocate(self, n: int) -> bool:
        """Take ``n`` blocks (evicting cached prefixes if needed); False if they are not there."""
        if not self._reclaim(n):
            return False
        self.free -= n
        return True

    def release(self, n: int) -> None:
        self.free += n

    # -- prefixes -------------------------------------------------------------------------
    def shareable_tokens(self, prefix_tokens: int) -> int:
        return prefix_tokens // self.block_size * self.block_size

    def lookup(self, pid: int) -> int:
        """Tokens of prefix ``pid`` cached (0 on a miss); a hit takes a reference."""
        entry = self.prefixes.get(pid)
        if entry is None:
            return 0
        if entry.refs == 0:
            del self._lru[pid]
        entry.refs += 1
        return entry.tokens

    def donate(self, pid: int, tokens: int) -> int:
        """A request that computed a prefix hands its whole blocks to the cache (it keeps a
        reference); returns the tokens now shared, 0 if the prefix was cached meanwhile."""
        shared = self.shareable_tokens(tokens)
        if pid in self.prefixes or shared == 0:
            return 0
        self.prefixes[pid] = PrefixEntry(shared, shared // self.block_size, refs=1)
        return shared

    def unref(self, pid: int) -> None:
        entry = self.prefixes[pid]
        entry.refs -= 1
        if entry.refs == 0:
            self._lru[pid] = None
