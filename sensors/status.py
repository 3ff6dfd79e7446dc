"""Whether schedules and sensors run from the start (RISK_AUTOMATIONS): a local deployment
runs itself, day after day; a status a user set in the UI wins over this default."""

from dagster import DefaultScheduleStatus, DefaultSensorStatus

from riskcore import settings

_ON = settings.load().automations
SCHEDULE_STATUS = DefaultScheduleStatus.RUNNING if _ON else DefaultScheduleStatus.STOPPED
SENSOR_STATUS = DefaultSensorStatus.RUNNING if _ON else DefaultSensorStatus.STOPPED
