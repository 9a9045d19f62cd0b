"""The busy rule: never two runs at once on one conversation through this process.

A Letta server runs two requests on one (agent, conversation) at once as undefined behaviour:
without Redis it does not even lock, and one of the two exchanges silently drops out of the
agent's context. A source that talks to a conversation names it in ``conversation_key``; a
fan-out claims every key of its sources before anything starts and gives them back when it
ends. Sources without the attribute (scripted ones, say) claim nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._exceptions import ConversationBusyError
from ._source import Source


class ConversationClaims:
    """Which fan-out holds which conversation key (one registry per process)."""

    def __init__(self) -> None:
        self._holder: dict[str, str] = {}
        self._keys: dict[str, list[str]] = {}

    def acquire(self, owner: str, sources: Sequence[Source]) -> None:
        """Claim the conversations of ``sources`` for the fan-out ``owner``, all or none.

        Raises :class:`ConversationBusyError` naming the agents whose conversation another
        fan-out holds, or that appear twice on one conversation in this fan-out. Claiming
        again for the same owner is a no-op.
        """
        wanted: dict[str, str] = {}
        busy: list[str] = []
        reasons: list[str] = []
        for source in sources:
            key = getattr(source, "conversation_key", None)
            if key is None:
                continue
            holder = self._holder.get(key)
            if holder is not None and holder != owner:
                busy.append(source.agent_id)
                reasons.append(f"{source.agent_id} (conversation {key} is running in {holder})")
            elif key in wanted:
                busy.append(source.agent_id)
                reasons.append(f"{source.agent_id} (same conversation as {wanted[key]})")
            else:
                wanted[key] = source.agent_id
        if busy:
            raise ConversationBusyError(
                "a conversation can run one request at a time; busy: " + "; ".join(reasons),
                agents=busy,
            )
        keys = self._keys.setdefault(owner, [])
        for key in wanted:
            if key not in self._holder:
                self._holder[key] = owner
                keys.append(key)

    def release(self, owner: str) -> None:
        """Give back every key ``owner`` holds (safe to call more than once)."""
        for key in self._keys.pop(owner, ()):
            if self._holder.get(key) == owner:
                del self._holder[key]

    def holder(self, key: str) -> str | None:
        """The fan-out that holds ``key``, if any."""
        return self._holder.get(key)


#: The registry every fan-out of this process claims from.
conversation_claims = ConversationClaims()
