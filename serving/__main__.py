"""`python -m serving`: the scoring service under uvicorn (uvloop, httptools, no access log:
paths carry customer ids). RISK_SERVING_HOST / RISK_SERVING_PORT / RISK_SERVING_WORKERS."""

import logging

import uvicorn

from riskcore import settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    env = settings.load()
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=env.serving_host,
        port=env.serving_port,
        workers=env.serving_workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        proxy_headers=False,  # behind a load balancer, set --forwarded-allow-ips instead
        server_header=False,
        # Load balancers hold connections open for longer than uvicorn's 5 s default.
        timeout_keep_alive=env.serving_keep_alive_s,
        log_level="info",
    )


if __name__ == "__main__":
    main()
