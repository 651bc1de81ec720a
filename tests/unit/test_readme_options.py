"""The README's option tables say what the code does: every default in them is the config's, and the configs'
defaults are the library's presets, so a changed preset fails here until the README follows."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from orchestration.apps.cli import _parser
from orchestration.defs.models import CandidateScoresConfig, SASRecModelConfig, UserSequencesConfig
from recmodels.presets import PIPELINE, REPLAY, SHORT_WINDOWS, SASRecConfig, TrainConfig
from recmodels.sequences import SequenceConfig
from recmodels.sizing import SASRecSize
from recmodels.splits import SplitWindows

README = Path(__file__).resolve().parents[2] / "README.md"
ASSET_CONFIGS = {"user_sequences": UserSequencesConfig, "sasrec_model": SASRecModelConfig,
                 "candidate_scores": CandidateScoresConfig}
REPLAY_COMMAND = "recsys replay"
# What `recsys replay` passes to the pipeline for each flag: (asset, option).
REPLAY_OPTIONS = {"--test-days": ("user_sequences", "test_days"),
                  "--validation-days": ("user_sequences", "validation_days"),
                  "--epochs": ("sasrec_model", "epochs"), "--hidden": ("sasrec_model", "hidden_size")}
NOT_OPTIONS = {"command", "home", "data"}  # the subcommand, the global --home and replay's required --data


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _tables() -> dict[str, list[list[str]]]:
    """Option tables by owner (an asset or a command): a header ``| `owner` option | default | ... |``."""
    tables, owner = {}, None
    for line in README.read_text().splitlines():
        if not line.startswith("|"):
            owner = None
            continue
        cells = _cells(line)
        header = re.fullmatch(r"`([^`]+)` option", cells[0])
        if header and cells[1] == "default":
            owner = header.group(1)
            tables[owner] = []
        elif owner and not set(cells[0]) <= set("- "):
            tables[owner].append(cells)
    return tables


def _asset_table_rows() -> dict[str, str]:
    """The 'what it writes' cell of each asset row of the README's asset tables."""
    rows = {}
    for line in README.read_text().splitlines():
        cells = _cells(line) if line.startswith("|") else []
        name = re.fullmatch(r"`(\w+)`", cells[0]) if cells else None
        if name and name.group(1) in ASSET_CONFIGS:
            rows[name.group(1)] = cells[1]
    return rows


def _shown(value: object, none: str = "null") -> str:
    """A default as the README writes it: YAML words for run config, ``-`` for an unset flag."""
    if value is None:
        return none
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _asset_default(asset: str, option: str) -> object:
    return ASSET_CONFIGS[asset].model_fields[option].default


def _replay_defaults() -> dict[str, object]:
    namespace = _parser().parse_args(["replay", "--data", "log.csv"])
    return {f"--{name.replace('_', '-')}": value for name, value in vars(namespace).items() if name not in NOT_OPTIONS}


TABLES = _tables()


def test_the_readme_has_each_option_table():
    assert {"user_sequences", "sasrec_model", REPLAY_COMMAND} <= set(TABLES)


@pytest.mark.parametrize("asset", ["user_sequences", "sasrec_model"])
def test_asset_option_tables_list_every_option_with_its_default(asset):
    table = {row[0].strip("`"): row[1].strip("`") for row in TABLES[asset]}
    config = ASSET_CONFIGS[asset].model_fields
    assert set(table) == set(config)
    assert {name: _shown(field.default) for name, field in config.items()} == table


def test_asset_rows_quote_the_defaults_of_the_options_they_name():
    quoted = 0
    for asset, text in _asset_table_rows().items():
        for option, value in re.findall(r"`(\w+)` \(([^)]+)\)", text):
            if option in ASSET_CONFIGS[asset].model_fields:
                assert value == _shown(_asset_default(asset, option)), f"{asset}.{option}"
                quoted += 1
    assert quoted >= 3  # test_days, validation_days, top_k


def test_replay_table_lists_every_flag_with_its_default_and_the_pipeline_value_it_replaces():
    defaults = _replay_defaults()
    table = {row[0].strip("`"): row for row in TABLES[REPLAY_COMMAND]}
    assert set(table) == set(defaults)
    for flag, (_, default, meaning) in table.items():
        assert default.strip("`") == _shown(defaults[flag], none="-"), flag
        pipeline = re.search(r"the pipeline's: ([^)]+)\)", meaning)
        if flag in REPLAY_OPTIONS:
            assert pipeline and pipeline.group(1) == _shown(_asset_default(*REPLAY_OPTIONS[flag])), flag


SIZED = {f.name for f in fields(SASRecSize)} - {"min_events"}


def test_asset_defaults_are_the_library_presets():
    model, train = {f.name for f in fields(SASRecConfig)}, {f.name for f in fields(TrainConfig)}
    for option, field in SASRecModelConfig.model_fields.items():
        if option == "item_to_item":  # null: chosen from the catalogue size at run time
            assert field.default is None
            continue
        if option in SIZED:  # null: sized to the training events at run time (recmodels.sizing)
            assert field.default is None, option
            continue
        preset = PIPELINE.model if option in model else PIPELINE.train
        assert option in model | train and field.default == getattr(preset, option), option
    windows = {f.name for f in fields(SplitWindows)}
    for option, field in UserSequencesConfig.model_fields.items():
        if option == "split":
            assert field.default == "auto"
            continue
        if option in windows:  # null: chosen from the data by the split rule (SplitRule) at run time
            assert field.default is None, option
            continue
        assert field.default == getattr(SequenceConfig(), option), option


def test_replay_defaults_are_the_replay_presets():
    defaults = _replay_defaults()
    assert (defaults["--test-days"], defaults["--validation-days"]) == (SHORT_WINDOWS.test_days,
                                                                        SHORT_WINDOWS.validation_days)
    assert (defaults["--epochs"], defaults["--hidden"]) == (REPLAY.train.epochs, REPLAY.model.hidden_size)
