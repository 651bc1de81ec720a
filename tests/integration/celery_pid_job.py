"""A three-step job for the Celery test (tests/integration/test_deploy_configs.py): each step returns the id of
the process it ran in. A module of its own so that the worker imports it by name, without the test module."""

from __future__ import annotations

import os

import dagster as dg
from dagster_celery import celery_executor


@dg.op
def first_pid() -> int:
    return os.getpid()


@dg.op
def second_pid() -> int:
    return os.getpid()


@dg.op
def step_pids(first: int, second: int) -> list[int]:
    return [first, second, os.getpid()]


@dg.job(executor_def=celery_executor)
def pid_job():
    step_pids(first_pid(), second_pid())
