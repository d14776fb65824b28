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


def test_rewards_lists_each_reward_with_its_whole_summary(capsys):
    """Each registered reward on one line with its docstring's first paragraph (a summary wrapped over two lines was
    cut at the first: "..., else")."""
    from vlm_r1.rewards import list_rewards

    assert main(["rewards"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(list_rewards())
    assert all(line.rstrip().endswith((".", ")")) for line in lines), [l for l in lines if not l.endswith((".", ")"))]


def test_make_data_writes_each_split_with_the_same_seed(tmp_path):
    from vlm_r1.synthetic import write_split

    assert main(["make-data", "--out", str(tmp_path / "a"), "--splits", "test", "--n", "3"]) == 0
    alone = (tmp_path / "a" / "rec_test.jsonl").read_text()
    expected = write_split(tmp_path / "b", "rec", "test", 3, seed=0).read_text()
    assert alone == expected.replace(str(tmp_path / "b"), str(tmp_path / "a"))


def test_a_missing_folder_under_a_local_folder_is_not_asked_of_the_hub(tmp_path, monkeypatch, capsys):
    """"outputs/finall" has a hub id's form, but outputs/ is here: it is refused as a missing folder at once (the
    Hub was asked first, ~25 s of retries offline, and eval asked twice)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    expected = "model_name_or_path outputs/finall: no such folder (outputs/ is a folder here, so this reads as a"
    assert main(["eval", "--model_name_or_path", "outputs/finall", "--data", "a.jsonl"]) == 2
    assert expected in capsys.readouterr().err
    assert main(["grqo", "--model_name_or_path", "outputs/finall", "--train_data", "a.jsonl", "--output_dir", "o"]) == 2
    assert expected in capsys.readouterr().err
    # a hub id whose first part is also a folder here, but which is in the Hugging Face cache: left to transformers
    import huggingface_hub.constants as hub

    from vlm_r1.modules import refuse_missing_folder

    snapshot = tmp_path / "hub" / "models--outputs--finall" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--outputs--finall" / "refs").mkdir()
    (tmp_path / "hub" / "models--outputs--finall" / "refs" / "main").write_text("abc")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    refuse_missing_folder("outputs/finall")  # no refusal


def test_make_data_refuses_to_replace_a_jsonl_without_overwrite(tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["make-data", "--out", str(out), "--splits", "test", "--n", "3"]) == 0
    before = (out / "rec_test.jsonl").read_text()
    with pytest.raises(SystemExit):
        main(["make-data", "--out", str(out), "--splits", "test", "ood", "--n", "2", "--seed", "1"])
    assert "already holds rec_test.jsonl: pass --overwrite" in capsys.readouterr().err
    assert (out / "rec_test.jsonl").read_text() == before and not (out / "rec_ood.jsonl").exists()
    assert main(["make-data", "--out", str(out), "--splits", "test", "--n", "2", "--overwrite"]) == 0
    assert len((out / "rec_test.jsonl").read_text().splitlines()) == 2


def test_user_errors_print_one_message_and_exit_2(tmp_path, capsys, rec_rows, tiny_model_dir):
    """A refused option, bad rows or an unusable checkpoint: the message alone, no traceback; a bug still raises."""
    model = str(tiny_model_dir("qwen2_vl"))
    argv = ["--model_name_or_path", model, "--train_data", "a.jsonl", "--output_dir", str(tmp_path / "o"),
            "--use_cpu", "true", "--bf16", "false"]  # fmt: skip
    assert main(["train", *argv, "--max_steps", "5", "--num_train_epochs", "2"]) == 2
    assert capsys.readouterr().err.startswith("vlm-r1 train: error: the command line: max_steps and num_train_epochs")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "nope.png", "conversations": []}\n')
    assert main(["eval", "--model_name_or_path", model, "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: image: " in err and "Traceback" not in err
    assert main(["train", *argv]) == 2  # a.jsonl does not exist
    assert capsys.readouterr().err == "vlm-r1 train: error: JSONL file not found: a.jsonl\n"
    assert main(["eval", "--model_name_or_path", str(tmp_path / "no_such_ckpt"), "--data", str(rec_rows)]) == 2
    assert capsys.readouterr().err.endswith(f"error: model_name_or_path {tmp_path / 'no_such_ckpt'}: no such folder\n")
    assert main(["eval", "--model_name_or_path", model, "--data", str(bad), "--max_tiles", "2"]) == 2
    assert "max_tiles is an InternVL setting" in capsys.readouterr().err  # refused by the module, before the data
    assert main(["eval", "--model_name_or_path", model, "--data", str(bad), "--min_pixels", "1000000"]) == 2
    assert "min_pixels 1000000 is above max_pixels" in capsys.readouterr().err  # the other bound from the checkpoint,
    assert main(["train", *argv, "--max_pixels", "100"]) == 2  # before the data (a.jsonl does not exist)
    assert "min_pixels 3136 is above max_pixels 100 (--max_pixels given" in capsys.readouterr().err
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert main(["eval", "--model_name_or_path", str(adapter), "--data", str(rec_rows)]) == 2
    assert "is a LoRA adapter folder, not a full checkpoint: merge it first" in capsys.readouterr().err
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert main(["train", *argv, "--output_dir", str(a_file / "run")]) == 2  # before the data (a.jsonl is missing)
    assert capsys.readouterr().err.endswith(f"--output_dir {a_file / 'run'}: {a_file} is a file, not a folder\n")
    assert main(["eval", "--model_name_or_path", model, "--data", str(rec_rows), "--output_dir", str(a_file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err  # before an evaluation whose results it would lose


def test_an_unwritable_output_dir_and_cut_weights_are_one_line_errors(tmp_path, capsys, rec_rows, tiny_model_dir,
                                                                     monkeypatch):
    import shutil
    import tempfile

    cut = tmp_path / "cut"
    shutil.copytree(tiny_model_dir("qwen2_vl"), cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50000])  # a save that was interrupted
    assert main(["eval", "--model_name_or_path", str(cut), "--data", str(rec_rows)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors: tensors need" in err and "(was its save interrupted?)" in err and "Traceback" not in err

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refused)  # as a read-only folder does (root ignores chmod)
    assert main(["eval", "--model_name_or_path", str(tiny_model_dir("qwen2_vl")), "--data", str(rec_rows),
                 "--output_dir", str(tmp_path / "ev")]) == 2  # fmt: skip
    assert f"--output_dir {tmp_path / 'ev'}: cannot write in {tmp_path} (Permission denied)" in capsys.readouterr().err


def test_make_data_make_tiny_and_the_pipeline_refuse_sizes_seeds_and_types_up_front(tmp_path, capsys):
    for argv, message in ((["make-data", "--out", str(tmp_path / "d"), "--image_size", "20"], "--image_size must be"),
                          (["make-data", "--out", str(tmp_path / "d"), "--seed", "-1"], "--seed must be"),
                          (["make-tiny", "--out", str(tmp_path / "t"), "--model_type", "llava"], "invalid choice"),
                          (["make-tiny", "--out", str(tmp_path / "t"), "--seed", str(2**64)], "--seed must be in 0 .."),
                          (["make-data", "--out", str(tmp_path / "d"), "--splits", "train", "--n_test", "5"],
                           "--n_test sizes the test and ood splits, and --splits asks for none"),
                          (["pipeline", "--work_dir", str(tmp_path / "w"), "--data_seed", "-1"], "data_seed must be"),
                          *((["pipeline", "--work_dir", str(tmp_path / "w"), f"--{name}", "0"], f"--{name} must be >= 1")
                            for name in ("n_train", "n_test", "eval_batch_size", "max_new_tokens", "grpo_max_steps"))):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
    mine = tmp_path / "my_project"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(["pipeline", "--work_dir", str(mine)])
    assert "holds files the pipeline did not write" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    with pytest.raises(SystemExit):  # make-tiny over a folder that holds anything: a run, data, another model
        main(["make-tiny", "--out", str(mine)])
    assert "is not empty" in capsys.readouterr().err and [p.name for p in mine.iterdir()] == ["notes.txt"]
    for command in ("make-tiny", "make-data"):  # a file where the folder should go
        assert main([command, "--out", str(mine / "notes.txt")]) == 2
        assert "is a file, not a folder" in capsys.readouterr().err


def test_a_checkpoint_with_custom_code_is_refused_without_running_it(tmp_path, capsys, rec_rows):
    import json

    ckpt = tmp_path / "custom"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "custom_vlm",
                                                  "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"}}))
    ran = tmp_path / "ran"
    (ckpt / "configuration_custom.py").write_text(f"import pathlib\npathlib.Path({str(ran)!r}).touch()\n")
    assert main(["eval", "--model_name_or_path", str(ckpt), "--data", str(rec_rows)]) == 2
    err = capsys.readouterr().err
    assert "needs its own Python code to load" in err and "--trust_remote_code true" in err
    assert not ran.exists()
