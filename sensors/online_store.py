"""Refill the online store when it is empty or behind the newest snapshot."""

from datetime import timedelta

from dagster import RunRequest, SensorEvaluationContext, SkipReason, sensor
from redis import RedisError

from assets.features.online import (
    newest_as_of_date,
    online_customer_features,
    online_entity_features,
)
from featurestore.registry import load_feature_set
from resources.lakehouse import Lakehouse
from resources.online_store import OnlineStoreResource
from riskcore.online_store import OnlineStoreError
from riskcore.timestamps import as_of_time
from sensors.status import SENSOR_STATUS


@sensor(
    # The entities' generations live in the same Redis: emptied with the customers', refilled too
    asset_selection=[online_customer_features, online_entity_features],
    minimum_interval_seconds=60,
    default_status=SENSOR_STATUS,
    description="Loads the newest snapshot into Redis when no generation serves it: Redis "
    "restarted without data, or a load failed. One run per state of the store.",
)
def online_store_refill(
    context: SensorEvaluationContext, lakehouse: Lakehouse, online_store: OnlineStoreResource
):
    newest = newest_as_of_date(lakehouse)
    if newest is None:
        return SkipReason("no snapshot in the lakehouse yet")
    try:
        store = online_store.store(load_feature_set().version)
        generation = store.current_generation(fresh=True)
        # Redis's run id changes at every restart: a store emptied twice is refilled twice.
        server_run = "+".join(sorted(node["run_id"] for node in store.info("server")))
    except (OnlineStoreError, RedisError) as exc:
        return SkipReason(f"Redis unreachable, nothing to do until it is back: {exc}")
    pinned = store.pinned()
    if pinned is not None and int(pinned["as_of"]) == int(as_of_time(newest).timestamp()):
        return SkipReason(
            f"the newest snapshot ({newest}) was rolled back by an operator at {pinned['at']} "
            f"({pinned['reason']}): the previous generation serves until a newer snapshot"
        )
    if generation is not None and generation.as_of.date() >= newest:
        return SkipReason(f"generation {generation.id} serves the newest snapshot ({newest})")
    state = f"generation {generation.id}" if generation else f"empty store (run {server_run})"
    return RunRequest(
        run_key=f"refill:{store.version}:{newest}:{state}",
        partition_key=(newest - timedelta(days=1)).isoformat(),
        tags={"risk/reason": f"online store refill: {state}, newest snapshot {newest}"},
    )
