"""The online store as a Dagster resource: which Redis, and how generations live in it."""

from dagster import ConfigurableResource
from pydantic import Field

from resources import local_redis
from riskcore import settings
from riskcore.online_store import OnlineStore, RedisClient, connect, safe_url


class OnlineStoreResource(ConfigurableResource):
    """One Redis (``url``; TLS and ACL users through ``rediss://user:password@host``), a Redis
    Cluster (``cluster``, seed nodes as comma-separated URLs), or with no URL a local
    redis-server keeping its data in the project's data folder."""

    url: str = Field(default="", description="Redis URL; empty = the embedded local server")
    cluster: bool = Field(default=False, description="the URL names Redis Cluster seed nodes")
    prefix: str = "rf"
    ttl_seconds: int = Field(default=3 * 86_400, description="lifetime of a generation")
    superseded_ttl_seconds: int = Field(
        default=300, description="how long a replaced generation lingers for in-flight readers"
    )
    bucket_size: int = 64
    socket_timeout_s: float = 10.0

    def redis_url(self) -> str:
        return self.url or local_redis.ensure_running(settings.load().embedded_redis_dir)

    def client(self) -> RedisClient:
        return connect(
            self.redis_url(),
            cluster=self.cluster,
            socket_timeout=self.socket_timeout_s,
            socket_connect_timeout=self.socket_timeout_s,
        )

    def store(self, version: str) -> OnlineStore:
        return OnlineStore(
            self.client(),
            version,
            prefix=self.prefix,
            ttl_s=self.ttl_seconds,
            superseded_ttl_s=self.superseded_ttl_seconds,
            bucket_size=self.bucket_size,
            where=safe_url(self.redis_url()),
        )


def from_environment() -> OnlineStoreResource:
    env = settings.load()
    return OnlineStoreResource(
        url=env.redis_url,
        cluster=env.redis_cluster,
        ttl_seconds=env.online_ttl_s,
        superseded_ttl_seconds=env.online_rollback_window_s,
    )
