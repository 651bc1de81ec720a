"""Events as plain numpy columns: what a request's path reads in place of a DataFrame.

Gathering, merging and reading one customer's few hundred events as arrays costs microseconds; building a
DataFrame of them costs more than the features computed from them. ``EventTable`` has the parts of a frame that
code reading events uses (``table[name]``, ``name in table``, ``columns``, ``len``), so that code reads either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


class EventTable:
    """Columns of one length, in order; immutable by convention (every method returns a new table)."""

    __slots__ = ("_columns", "_length")

    def __init__(self, columns: Mapping[str, np.ndarray]):
        self._columns = {name: np.asarray(values) for name, values in columns.items()}
        lengths = {name: len(values) for name, values in self._columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns of different lengths: {lengths}")
        self._length = next(iter(lengths.values()), 0)

    @classmethod
    def of(cls, events: pd.DataFrame | EventTable) -> EventTable:
        """A frame's columns as arrays (``to_numpy``: text as objects, missing text as NaN); a table as it is."""
        if isinstance(events, EventTable):
            return events
        return cls({name: events[name].to_numpy() for name in events.columns})

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self._columns)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns[name]

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def take(self, rows: np.ndarray) -> EventTable:
        """The rows at ``rows`` (positions or a mask), in that order."""
        return EventTable({name: values[rows] for name, values in self._columns.items()})

    def assign(self, **columns: object) -> EventTable:
        """This table with ``columns`` set, in place where one exists, else at the end; a value that is not an
        array is every row's (text as objects)."""
        given = {name: values if isinstance(values, np.ndarray)
                 else np.full(self._length, values, dtype=object if isinstance(values, str) else None)
                 for name, values in columns.items()}
        return EventTable({**self._columns, **given})

    @classmethod
    def concat(cls, tables: Sequence[EventTable], empty: EventTable) -> EventTable:
        """``tables`` one after another, in the columns of ``empty`` (every table has them); ``empty`` if none."""
        if not tables:
            return empty
        return cls({name: np.concatenate([table[name] for table in tables]) for name in empty.columns})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self._columns)
