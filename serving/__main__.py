"""`python -m serving`: the scoring service under uvicorn (uvloop, httptools, no access log:
paths carry customer ids). RISK_SERVING_HOST / RISK_SERVING_PORT / RISK_SERVING_WORKERS."""

import logging
import os

import uvicorn


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=os.environ.get("RISK_SERVING_HOST", "127.0.0.1"),
        port=int(os.environ.get("RISK_SERVING_PORT", "8000")),
        workers=int(os.environ.get("RISK_SERVING_WORKERS", "1")),
        loop="uvloop",
        http="httptools",
        access_log=False,
        proxy_headers=False,  # behind a load balancer, set --forwarded-allow-ips instead
        server_header=False,
        # Load balancers hold connections open for longer than uvicorn's 5 s default.
        timeout_keep_alive=int(os.environ.get("RISK_SERVING_KEEP_ALIVE_S", "75")),
        log_level="info",
    )


if __name__ == "__main__":
    main()
