from dataclasses import fields
from pathlib import Path

import pytest

from tvcaption.config import Config, ConfigError, as_dict, load_config, with_overrides

REPO = Path(__file__).resolve().parents[1]


def test_shipped_toml_lists_every_option_at_its_default():
    shipped = load_config(REPO / "tvcaption.toml", env={})
    assert as_dict(shipped) == as_dict(Config())
    text = (REPO / "tvcaption.toml").read_text()
    for section in fields(Config):
        if section.name == "root":
            continue
        assert f"[{section.name}]" in text
        for option in fields(section.default_factory):
            assert f"{option.name} =" in text, f"{section.name}.{option.name} missing from tvcaption.toml"


def test_layers_file_then_env_then_flags(tmp_path):
    cfg = tmp_path / "tvcaption.toml"
    cfg.write_text('[decoding]\nbeam_size = 5\n[database]\nurl = "sqlite:///x.db"\n')
    c = load_config(cfg, env={"TVCAPTION_DECODING__MAX_LEN": "12", "TVCAPTION_INDEX__RECURSIVE": "false"})
    assert c.decoding.beam_size == 5 and c.decoding.max_len == 12 and c.index.recursive is False
    assert c.database_url == f"sqlite:///{tmp_path / 'x.db'}"
    c = with_overrides(c, "decoding", beam_size=1, max_len=None)
    assert c.decoding.beam_size == 1 and c.decoding.max_len == 12


def test_bad_config_is_one_clear_line(tmp_path):
    cfg = tmp_path / "tvcaption.toml"
    cfg.write_text("[decoding]\nbeam = 5\n")
    with pytest.raises(ConfigError, match="unknown option"):
        load_config(cfg, env={})
    with pytest.raises(ConfigError, match="expected a number"):
        load_config(None, env={"TVCAPTION_DECODING__BEAM_SIZE": "five"})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", env={})
    cfg.write_text("[database]\nclaim_timeout = 0\n")  # claims renewed every 0 s would flood the database
    with pytest.raises(ConfigError, match="claim_timeout = 0.*more than 0"):
        load_config(cfg, env={})
    with pytest.raises(ConfigError, match="claim_timeout"):
        load_config(None, env={"TVCAPTION_DATABASE__CLAIM_TIMEOUT": "-5"})


def test_openvino_streams_default_to_the_usable_cores_at_most_a_batch():
    import os

    from tvcaption.config import FeaturesConfig

    cores = len(os.sched_getaffinity(0))
    assert FeaturesConfig().inference_streams == min(cores, 32)
    assert FeaturesConfig(batch_size=1).inference_streams == 1  # more streams than frames a call would never run
    assert FeaturesConfig(threads=3).inference_streams == 3  # a Ray worker's cores
    assert FeaturesConfig(threads=3, streams=5).inference_streams == 5


def test_inference_threads_count_the_cores_this_process_may_use(monkeypatch):
    import os

    from tvcaption.config import FeaturesConfig

    import tvcaption.config as config_module

    monkeypatch.setattr(config_module, "_cgroup_quota", lambda: None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the host's; a container may use 4 of them
    assert FeaturesConfig().inference_threads == 3  # every usable core but one: decoding runs beside
    assert FeaturesConfig().inference_streams == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5}, raising=False)
    assert FeaturesConfig().inference_threads == 1 and FeaturesConfig().inference_streams == 1
    assert FeaturesConfig(threads=2).inference_threads == 2


def test_a_cgroup_cpu_quota_caps_the_usable_cores(tmp_path, monkeypatch):
    import os

    import tvcaption.config as config_module

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    cpu_max = tmp_path / "cpu.max"
    real = config_module._cgroup_quota
    monkeypatch.setattr(config_module, "_cgroup_quota", lambda: real(str(cpu_max)))
    for text, cores in (("150000 100000\n", 2), ("400000 100000\n", 4), ("max 100000\n", 16), ("garbage", 16)):
        cpu_max.write_text(text)
        assert config_module.usable_cores() == cores, text
    cpu_max.unlink()  # no cgroup v2 file: the affinity alone
    assert config_module.usable_cores() == 16
