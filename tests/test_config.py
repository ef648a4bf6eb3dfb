"""Config validation: defaults, messages that name the key, variant resolution."""

from __future__ import annotations

import copy

import pytest
import yaml

from facesketch.config import (
    deep_merge,
    demo_config_path,
    finalize,
    load_config,
    load_yaml,
    resolve_variant,
    run_variants,
    weights_dir,
)
from facesketch.errors import ConfigError

from .conftest import REPO


@pytest.fixture(scope="module")
def raw():
    return load_yaml(REPO / "config.yaml")


def fin(cfg):
    return finalize(copy.deepcopy(cfg))


def test_full_config_resolves_every_variant(raw):
    cfg = fin(raw)
    assert set(cfg["resolved"]) == set(raw["variants"])
    for name, spec in cfg["resolved"].items():
        assert spec["name"] == name
        assert spec["family"] in ("paired", "unpaired")
        assert spec["optimizer"]["lr_g"] > 0
    # numbers written for YAML 1.1 are floats, not strings
    assert isinstance(cfg["resolved"]["pix2pix"]["optimizer"]["lr_g"], float)


def test_demo_overlay_is_valid_and_scaled_down():
    cfg = load_config([REPO / "config.yaml", demo_config_path()])
    assert run_variants(cfg) == ["pix2pix", "hida_full", "cyclegan_attn_no_edge_normal"]
    hida = cfg["resolved"]["hida_full"]
    assert hida["input"]["crop"] == 128 and hida["generator"]["ngf"] == 32
    assert hida["generator"]["dog"] == "top2"  # the overlay changed size, not the architecture
    assert cfg["paths"]["results"] == "results/demo"


def test_defaults_are_filled(raw):
    cfg = fin({"fs2k": {}, "train_defaults": raw["train_defaults"], "variants": {"v": raw["variants"]["cyclegan"]}})
    assert cfg["follow"] == "code"  # a reproduction does by default what the authors' code did
    assert cfg["metrics"]["names"] == ["FID", "LPIPS", "SCOOT", "FSIM", "SSIM", "MS-SSIM"]
    assert cfg["fs2k"]["align"] == {"size": 250, "method": "box", "portrait_top": 0.12}
    assert cfg["infer"]["styles"] == ["Style1", "Style2", "Style3"]


@pytest.mark.parametrize("patch, message", [
    ({"fs2k": {"archiv": "x.zip"}}, "fs2k: unknown key 'archiv'"),
    ({"maps": {"depth": {"predictor": "midas"}}}, "maps.depth.predictor: 'midas' is not one of"),
    ({"infer": {"styles": ["Style4"]}}, "infer.styles[0]: 'Style4' is not one of 'Style1', 'Style2', 'Style3'"),
    ({"infer": {"batch_size": "eight"}}, "infer.batch_size: expected integer, got str"),
    ({"variants": {"pix2pix": {"generator": {"dog": "top3"}}}}, "variants.pix2pix.generator.dog: 'top3'"),
    ({"variants": {"pix2pix": {"losses": {"l2": 1.0}}}}, "variants.pix2pix.losses: unknown key 'l2'"),
    ({"metrics": {"names": ["FID", "PSNR"]}}, "metrics.names[1]: 'PSNR' is not one of"),
    ({"fs2k": {"sha256": "abc"}}, "fs2k.sha256"),
    ({"variants": {"bad-name": {}}}, "bad name 'bad-name'"),
])
def test_errors_name_the_key(raw, patch, message):
    with pytest.raises(ConfigError) as e:
        fin(deep_merge(raw, patch))
    assert message in str(e.value)


def test_cross_references_are_checked(raw):
    with pytest.raises(ConfigError, match=r"tables.hida_table1.rows\[0\].variant: unknown variant 'nope'"):
        bad = copy.deepcopy(raw)
        bad["tables"]["hida_table1"]["rows"][0]["variant"] = "nope"
        fin(bad)
    with pytest.raises(ConfigError, match="run.variants: 'ghost' is not configured"):
        fin(deep_merge(raw, {"run": {"variants": ["ghost"]}}))
    with pytest.raises(ConfigError, match="report.figures.methods: no table named 'x'"):
        fin(deep_merge(raw, {"report": {"figures": {"methods": "x"}}}))
    with pytest.raises(ConfigError, match="paper.*not among the table's metrics"):
        bad = copy.deepcopy(raw)
        bad["tables"]["hida_dog"]["rows"][0]["paper"] = {"SSIM": 0.5}
        fin(bad)


def test_extends_chain_follow_and_overrides(raw):
    cfg = fin(deep_merge(raw, {"follow": "paper"}))
    full = cfg["resolved"]["hida_full"]
    # hida_full <- hida_D <- hida_C <- hida_B <- [hida_base, hida_paper]
    assert full["generator"]["dog"] == "top2"
    assert full["generator"]["decoder_activation"] == "infoacon"
    assert full["generator"]["decoder_norm"] == "dyspade"
    assert full["losses"]["gan"]["type"] == "vanilla" and full["generator"]["residual"] == "paper"
    code = fin(deep_merge(raw, {"follow": "code"}))["resolved"]["hida_full"]
    assert code["losses"]["gan"] == {"type": "hinge", "weight": 1.0, "d_extra": True, "fake_depth": "input"}
    assert full["losses"]["gan"]["fake_depth"] == "reconstructed"  # paper Eq. 8
    assert fin(raw)["resolved"]["hida_full"] == code  # config.yaml follows the released code by default
    assert code["losses"]["textural"]["mode"] == "prewitt_photo" and code["generator"]["residual"] == "code"
    assert code["optimizer"]["type"] == "adamw" and code["schedule"] == {"epochs": 800, "decay_epochs": 400}
    # train_overrides beat the variant's own keys; train_defaults lose to them
    over = fin(deep_merge(raw, {"train_overrides": {"batch_size": 2}}))["resolved"]
    assert {s["batch_size"] for s in over.values()} == {2}
    assert cfg["resolved"]["pix2pix"]["input"] == {"image": 250, "pad": 18, "crop": 256}


def test_extends_loops_and_unknown_parents(raw):
    bad = deep_merge(raw, {"variants": {"a": {"extends": "b"}, "b": {"extends": "a"}}})
    with pytest.raises(ConfigError, match="loops through a -> b -> a"):
        fin(bad)
    with pytest.raises(ConfigError, match="unknown variant or preset 'missing'"):
        fin(deep_merge(raw, {"variants": {"a": {"extends": "missing"}}}))


def test_incomplete_variant_names_missing_keys(raw):
    with pytest.raises(ConfigError, match="variants.lonely: 'generator' is a required property"):
        fin(deep_merge(raw, {"variants": {"lonely": {"family": "paired"}}}))


def test_resolve_unknown_variant(raw):
    with pytest.raises(ConfigError, match="unknown variant 'x'"):
        resolve_variant(fin(raw), "x")


def test_weights_dir_precedence(raw, monkeypatch):
    cfg = fin(raw)
    monkeypatch.delenv("FACESKETCH_WEIGHTS", raising=False)
    assert str(weights_dir(cfg)) == "weights"
    monkeypatch.setenv("FACESKETCH_WEIGHTS", "/elsewhere")
    assert str(weights_dir(cfg)) == "/elsewhere"
    cfg["paths"]["weights"] = "/configured"
    assert str(weights_dir(cfg)) == "/configured"


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


# the train_defaults block of the first release (with the released code's fp32, and the init,
# inference mode and checkpoint selection keys added since), written out: a config without any
# train_defaults must still train exactly so (the schema fills each of these once, after merging)
FIRST_RELEASE_TRAIN_DEFAULTS = {
    "input": {"image": 250, "pad": 18, "crop": 256}, "augment": {"flip": True}, "seeds": [0],
    "precision": "fp32", "compile": True, "channels_last": True, "cuda_graphs": False, "image_pool": 0,
    "checkpoint_every": 25, "sample_every": 25, "max_steps_per_epoch": None,
    "init": "normal", "infer": {"mode": "eval"}, "select": "final", "val_fraction": 0.1,
}


def test_a_config_without_train_defaults_resolves_as_with_them(raw):
    without = copy.deepcopy(raw)
    without.pop("train_defaults", None)
    with_block = dict(copy.deepcopy(raw), train_defaults=FIRST_RELEASE_TRAIN_DEFAULTS)
    a, b = fin(without)["resolved"], fin(with_block)["resolved"]
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name
    assert a["hida_full"]["precision"] == "fp32" and a["hida_full"]["input"]["pad"] == 18
    assert a["hida_full"]["init"] == "default" and a["pix2pix"]["init"] == "normal"
    assert a["pix2pix"]["infer"]["mode"] == "train" and a["hida_full"]["infer"]["mode"] == "eval"
    # a partial block is completed after merging: the demo's crop 128 keeps image/pad from their home
    partial = fin(dict(copy.deepcopy(without), train_overrides={"input": {"crop": 128}}))["resolved"]["pix2pix"]
    assert partial["input"] == {"image": 250, "pad": 18, "crop": 128}


def test_one_table_of_metrics_names_what_the_schema_allows():
    from facesketch.config import schema
    from facesketch.metrics.catalogue import CPU_METRICS, LOWER_IS_BETTER, METRICS, SKETCH_METRICS

    assert list(SKETCH_METRICS) == schema()["properties"]["metrics"]["properties"]["names"]["items"]["enum"]
    assert list(METRICS) == schema()["$defs"]["table"]["properties"]["metrics"]["items"]["enum"]
    assert LOWER_IS_BETTER == {"FID", "KID", "LPIPS"}  # distances; the rest are similarities
    assert set(CPU_METRICS) == {"SCOOT", "FSIM", "SSIM", "MS-SSIM"} and METRICS["FID"].scope == "set"
