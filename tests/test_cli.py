"""The `vlm-r1` command: every subcommand is wired and answers --help; unknown commands fail clearly."""

from __future__ import annotations

import pytest

from vlm_r1.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_answers_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_unknown_command_lists_the_commands(capsys):
    assert main(["trian"]) == 2
    captured = capsys.readouterr()
    assert "unknown command 'trian'" in captured.err
    for command in COMMANDS:
        assert command in captured.out


def test_make_data_writes_each_split_with_the_same_seed(tmp_path):
    from vlm_r1.synthetic import write_split

    assert main(["make-data", "--out", str(tmp_path / "a"), "--splits", "test", "--n", "3"]) == 0
    alone = (tmp_path / "a" / "rec_test.jsonl").read_text()
    expected = write_split(tmp_path / "b", "rec", "test", 3, seed=0).read_text()
    assert alone == expected.replace(str(tmp_path / "b"), str(tmp_path / "a"))
