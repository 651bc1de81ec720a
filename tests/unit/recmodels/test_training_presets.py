"""Named presets: their values are the entry points' defaults, so a change here changes computed numbers."""

import subprocess
import sys
from dataclasses import asdict, replace

from recmodels import presets
from recmodels.presets import SASRecConfig, TrainConfig


def _changed(preset: presets.Preset) -> dict:
    """The fields where a preset departs from the library defaults."""
    model = {k: v for k, v in asdict(preset.model).items() if v != getattr(SASRecConfig(), k)}
    train = {k: v for k, v in asdict(preset.train).items() if v != getattr(TrainConfig(), k)}
    return {**model, **train}


def test_the_pipeline_preset_is_the_demo_sized_model():
    assert _changed(presets.PIPELINE) == {"hidden_size": 32, "item_text": "id+text", "epochs": 20, "lr": 5e-3,
                                          "warmup_steps": 20, "patience": 5, "num_threads": 1}


def test_replay_and_smoke_differ_from_the_pipeline_in_size_only():
    pipeline = presets.PIPELINE
    assert presets.REPLAY == presets.Preset(replace(pipeline.model, hidden_size=64), replace(pipeline.train, epochs=10))
    assert presets.SMOKE == presets.Preset(replace(pipeline.model, hidden_size=16), replace(pipeline.train, epochs=3))
    assert (presets.SHORT_WINDOWS.test_days, presets.SHORT_WINDOWS.validation_days) == (14, 14)


def test_benchmark_presets_are_the_configurations_measured():
    assert _changed(presets.SEQUENTIAL_BENCHMARK) == {"hidden_size": 256, "num_heads": 4, "item_text": "id+text",
                                                      "history_bias": True, "patience": 3, "lr": 2e-3,
                                                      "batch_size": 256, "set_targets": True}
    assert _changed(presets.RANKING_BENCHMARK) == {"hidden_size": 128, "num_heads": 4, "item_text": "id+text",
                                                   "item_to_item": True, "history_bias": True, "patience": 3,
                                                   "lr": 2e-3, "batch_size": 256}


def test_presets_load_without_torch():
    # The pipeline's definitions and the command lines read these defaults; torch would slow every start.
    code = "import sys, recmodels.presets; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_model_and_training_modules_re_export_the_configs():
    from recmodels.sasrec import SASRecConfig as FromModel
    from recmodels.training import TrainConfig as FromTraining

    assert FromModel is SASRecConfig and FromTraining is TrainConfig


def test_sasrec_is_sized_by_its_training_events():
    from recmodels.sizing import sized_sasrec

    sizes = {n: (p.model.hidden_size, p.train.lr, p.train.batch_size, p.train.epochs, p.train.patience,
                 p.train.num_threads, p.train.warmup_steps) for n in (0, 39_413, 49_999, 50_000, 249_999, 250_000, 10**7)
             for p in [sized_sasrec(n)]}
    demo, middle, large = (32, 5e-3, 128, 20, 5, 1, 20), (64, 3e-3, 128, 30, 4, None, 100), \
        (128, 2e-3, 256, 30, 3, None, 100)
    assert sizes == {0: demo, 39_413: demo, 49_999: demo, 50_000: middle, 249_999: middle, 250_000: large,
                     10**7: large}
    # The demo's shop (39,413 training events) keeps the PIPELINE preset; everything else is the preset's.
    assert sized_sasrec(39_413) == presets.PIPELINE
    large = sized_sasrec(400_000)
    assert replace(large.model, hidden_size=32) == presets.PIPELINE.model
    assert large.train.set_targets == presets.PIPELINE.train.set_targets
