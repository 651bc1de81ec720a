"""Dagster orchestration of the recsys pipeline: assets, checks, resources, jobs, schedules, sensors."""
