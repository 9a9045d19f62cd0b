"""Settings of the HTTP API: limits, retention, keep-alive, security."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from orchestrator import ConfigError

_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Everything :func:`~api.create_app` needs besides the agent directory.

    The defaults suit one machine serving a panel page: no API key (loopback only), CORS
    off, at most 16 agents per fan-out and 32 fan-outs at once, events kept 10 minutes
    after a fan-out ends. Raises :class:`~orchestrator.ConfigError` on impossible values.
    """

    #: Bearer token required on every endpoint except ``/healthz`` and the docs.
    api_key: str | None = None
    #: Origins allowed by CORS; empty means CORS is off. Pages of these origins may also
    #: open the WebSocket and send requests (see ``docs/security.md``).
    cors_origins: tuple[str, ...] = ()
    #: Host names (``Host`` header) served besides the loopback names: the public name of
    #: the server behind a proxy, the address it is bound to. ``"*"`` turns the check off.
    allowed_hosts: tuple[str, ...] = ()
    #: Largest request body accepted (``413`` beyond), checked before the body is read.
    max_body_bytes: int = 1024 * 1024
    #: Secret that signs stream tokens; random per process when ``None`` (replicas behind
    #: one load balancer need a shared one).
    token_secret: str | None = field(default=None, repr=False)
    #: Seconds a stream token (``POST /v1/stream-tokens``) may be used to open a stream.
    stream_token_ttl_s: float = 60.0
    #: Letta server used when no directory is injected (``LETTA_BASE_URL``).
    letta_base_url: str | None = None
    #: Token for the Letta server (``LETTA_API_KEY``).
    letta_token: str | None = field(default=None, repr=False)
    #: Connections to the Letta server at once: one per agent stream of every running
    #: fan-out (``max_active_fanouts`` x agents), so 100 clients x 4 agents need 400.
    letta_max_connections: int = 100
    max_agents: int = 16
    max_message_bytes: int = 64 * 1024
    max_active_fanouts: int = 32
    #: Seconds a finished fan-out stays resumable.
    retention_s: float = 600.0
    #: Events kept per fan-out; older ones are dropped once no reader needs them.
    max_log_events: int = 10_000
    #: Finished fan-outs kept at most (oldest forgotten first).
    max_retained_fanouts: int = 1_000
    #: Keep-alive comment interval on SSE streams.
    ping_s: float = 15.0
    #: A client that does not take one event within this time is dropped.
    send_timeout_s: float = 30.0
    #: ``Retry-After`` sent with ``429``.
    retry_after_s: int = 2
    #: How long ``/healthz`` waits for the Letta server.
    health_timeout_s: float = 3.0
    #: The SQL database of sessions (``sqlite:///PATH`` or ``postgresql://...``); ``None``:
    #: ``$ORCHESTRATOR_DATABASE_URL``, else SQLite at ``./.orchestrator/state.db``.
    database_url: str | None = field(default=None, repr=False)
    #: Redis shared by the replicas (``redis://...``); ``None``: ``$ORCHESTRATOR_REDIS_URL``,
    #: else the in-memory hub (one process). See ``docs/deployment.md``.
    redis_url: str | None = field(default=None, repr=False)
    #: Seconds before another replica takes over a dead replica's fan-outs.
    lease_s: float = 5.0
    #: Connections to Redis at most: each running fan-out this replica reads for another
    #: holds one while it follows its Stream.
    redis_max_connections: int = 256
    #: This replica's name in Redis and logs (default: host, pid and a random suffix).
    replica_id: str | None = None
    #: Send Letta requests in background mode (``background=True``): a dropped connection
    #: is resumed, and another replica can continue a dead one's runs. Needs Redis on the
    #: Letta server. ``None``: on when ``redis_url`` is set.
    letta_background: bool | None = None

    def resolved_redis_url(self) -> str | None:
        """``redis_url``, else ``$ORCHESTRATOR_REDIS_URL``, else ``None`` (in-memory hub)."""
        return self.redis_url or os.environ.get("ORCHESTRATOR_REDIS_URL") or None

    def __post_init__(self) -> None:
        for name in (
            "max_agents",
            "letta_max_connections",
            "max_message_bytes",
            "max_body_bytes",
            "stream_token_ttl_s",
            "max_active_fanouts",
            "retention_s",
            "max_log_events",
            "max_retained_fanouts",
            "ping_s",
            "send_timeout_s",
            "health_timeout_s",
            "lease_s",
            "redis_max_connections",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"ApiSettings.{name} must be a number > 0, got {value!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("ApiSettings.api_key must not be empty (use None for no key)")
        if self.token_secret is not None and len(self.token_secret) < 16:
            raise ConfigError("ApiSettings.token_secret must have at least 16 characters")
        for host in self.allowed_hosts:
            if host != "*" and ("*" in host[1:] or (host.startswith("*") and host[:2] != "*.")):
                raise ConfigError(
                    f"ApiSettings.allowed_hosts: {host!r} is no host name; a wildcard must "
                    "look like '*.example.com'"
                )

    def trusted_hosts(self) -> list[str]:
        """Every ``Host`` name the app answers: the loopback names plus ``allowed_hosts``."""
        hosts = list(LOOPBACK_HOSTS)
        for host in self.allowed_hosts:
            name = _host_name(host)
            if name not in hosts:
                hosts.append(name)
        return hosts


#: Host names a loopback server always answers to.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def _host_name(host: str) -> str:
    # The Host header carries an IPv6 address in brackets.
    name = host.strip().lower()
    try:
        if ipaddress.ip_address(name).version == 6:
            return f"[{name}]"
    except ValueError:
        pass
    return name


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: ApiSettings) -> None:
    """Refuse to serve a non-loopback address without an API key (:class:`ConfigError`)."""
    if settings.api_key is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to bind {host!r} without an API key: anyone on the network could "
            "start agents; set --api-key (ORCHESTRATOR_API_KEY) or bind 127.0.0.1"
        )
