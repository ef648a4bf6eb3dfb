"""The CLI as users meet it: --version, help text on every option, -v on either side of the
subcommand."""

from __future__ import annotations

import logging

import pytest

from facesketch import __version__
from facesketch.cli import build_parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"facesketch {__version__}"


def test_every_option_of_every_subcommand_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in sub.choices.items() for a in p._actions
               if a.help is None]
    assert not missing, missing
    infer = sub.choices["infer"].format_help()
    assert "cross" in infer and "--cross-style" in infer
    assert "cuda:N" in sub.choices["train"].format_help()


@pytest.mark.parametrize("argv", [["-v", "validate-config"], ["validate-config", "-v"],
                                  ["validate-config", "--verbose"]])
def test_verbose_before_or_after_the_subcommand(argv):
    args = build_parser().parse_args(argv)
    assert args.verbose is True
    assert build_parser().parse_args(["validate-config"]).verbose is False


def test_verbose_after_the_subcommand_turns_on_debug_logging(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: seen.update(kw))
    assert main(["validate-config", "--config", str(tmp_path / "none.yaml"), "-v"]) == 2
    assert seen["level"] == logging.DEBUG
