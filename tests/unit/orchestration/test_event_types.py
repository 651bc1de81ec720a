"""A shop's own event names: parsed from config or the environment, and the behaviours match dbt's."""

from pathlib import Path

import pytest
import yaml

from orchestration.ingest.sources import BEHAVIOURS, shop_event_types

DBT_PROJECT = Path(__file__).resolve().parents[3] / "transforms" / "dbt_project.yml"


def test_the_behaviours_are_the_ones_dbt_maps_names_to():
    names = yaml.safe_load(DBT_PROJECT.read_text())["vars"]["event_types"]
    assert tuple(names) == BEHAVIOURS
    aliases = [alias for behaviour in names.values() for alias in behaviour]
    assert len(aliases) == len(set(aliases))  # no name stands for two behaviours
    assert all(alias == alias.strip().lower() for alias in aliases)  # compared trimmed and lower-cased


def test_shop_names_parse_from_config_or_the_environment(monkeypatch):
    assert shop_event_types(" Thumbs_Up = Favourite , ping=view,") == {"thumbs_up": "favourite", "ping": "view"}
    monkeypatch.setenv("RECSYS_EVENT_TYPES", "tap=view")
    assert shop_event_types() == {"tap": "view"}
    assert shop_event_types("") == {}  # config given (empty) wins over the environment
    monkeypatch.delenv("RECSYS_EVENT_TYPES")
    assert shop_event_types() == {}


@pytest.mark.parametrize("bad", ["click=views", "=view", "click"])
def test_a_bad_mapping_names_the_pair_and_the_behaviours(bad):
    with pytest.raises(ValueError, match=rf"'{bad}'.*view, cart, favourite, purchase"):
        shop_event_types(bad)
