from __future__ import annotations

import argparse

import pytest

from crisislens.runtime.cli import EXIT_MISSING_DEPENDENCY, EXIT_USAGE, Cli, CliError, main, require


def _tree() -> tuple[argparse.ArgumentParser, list[str]]:
    calls: list[str] = []
    parser = argparse.ArgumentParser(prog="t")
    parser.set_defaults(_handler=None, _group_parser=parser)
    cli = Cli(parser)
    cli.command("hello", "say hello", lambda a: calls.append("hello") or 0)
    group = cli.group("eval", "evaluate")
    group.command("baseline", "the baseline", lambda a: calls.append("baseline") or 0)
    assert cli.group("eval", "again") is group  # a second stage adds to the same group
    return parser, calls


def test_nested_commands_dispatch():
    parser, calls = _tree()
    args = parser.parse_args(["eval", "baseline"])
    assert args._handler(args) == 0 and calls == ["baseline"]


def test_duplicate_command_is_refused():
    parser = argparse.ArgumentParser()
    cli = Cli(parser)
    cli.command("x", "x", lambda a: 0)
    with pytest.raises(ValueError, match="registered twice"):
        cli.command("x", "x", lambda a: 0)


def test_group_without_subcommand_prints_help_and_exits_2(capsys):
    assert main(["eval"]) == EXIT_USAGE
    assert "baseline" in capsys.readouterr().err


def test_a_runtime_command_starts_without_the_other_stages():
    """`crisislens triage ...` builds only the runtime's commands (their imports cost a one-post
    run's start); every other command line, and `--help`, sees every stage."""
    import subprocess
    import sys

    from crisislens.runtime.cli.parser import build_parser

    def commands(parser: argparse.ArgumentParser) -> set[str]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return set(sub.choices)

    alone = commands(build_parser(["triage", "posts.jsonl"]))
    assert {"triage", "validate"} <= alone and not alone & {"eval", "distill", "store", "tui"}
    for argv in (["eval", "baseline"], ["store", "import"], ["--help"], []):
        assert {"triage", "eval", "distill", "store", "tui"} <= commands(build_parser(argv))
    probe = (
        "import sys; from crisislens.runtime.cli.parser import build_parser; build_parser(['triage', 'x']); "
        "print(sorted(m for m in sys.modules if m.startswith(('crisislens.distill', 'crisislens.evaluation', "
        "'crisislens.tui', 'crisislens.cluster', 'importlib.metadata'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version_is_read_only_when_asked(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("crisislens ")


def test_require_names_the_extra():
    with pytest.raises(CliError, match=r"crisislens\[tui\]") as info:
        require("surely_not_installed_module_xyz", "tui")
    assert info.value.code == EXIT_MISSING_DEPENDENCY


def test_student_options_reach_the_training_config(tmp_path):
    pytest.importorskip("torch")
    from crisislens.distill import cli as distill_cli

    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "best.pt").write_bytes(b"")
    base = dict(data_root=tmp_path, teacher=tmp_path / "teacher", outputs=None, out=None, cache=tmp_path, seed=13,
                epochs=None, max_minutes=0.0, ablation=None)
    config = distill_cli._student_config(argparse.Namespace(**base, image_size=224, pairs=0))
    assert config.model.image_size == 224 and config.pairs == 0
    default = distill_cli._student_config(argparse.Namespace(**base, image_size=None, pairs=None))
    assert default.model.image_size == 112 and default.pairs == 5562
    assert default.model.fusion_layers == 1
    two = distill_cli._student_config(argparse.Namespace(**base, image_size=None, pairs=None, fusion_layers=2))
    assert two.model.fusion_layers == 2
    tuned = distill_cli._student_config(argparse.Namespace(**base, image_size=None, pairs=None, tune_image_blocks=3))
    assert tuned.model.tuned_image_blocks == 3
    for bad in (-1, 11):
        with pytest.raises(CliError, match=f"--tune-image-blocks {bad}"):
            distill_cli._student_config(argparse.Namespace(**base, image_size=None, pairs=None, tune_image_blocks=bad))
    with pytest.raises(CliError, match="--tune-image-blocks 3"):
        distill_cli._student_config(argparse.Namespace(**base, image_size=None, pairs=None, image_blocks="all",
                                                       tune_image_blocks=3))
    assert default.model.image_blocks == 11 and default.model.transfer_dim > 0
    whole = distill_cli._student_config(argparse.Namespace(**base, image_size=192, pairs=None, image_blocks="all",
                                                           patch_head="mlp"))
    assert (whole.model.image_blocks, whole.model.image_channels, whole.model.transfer_dim) == (None, 1280, 0)
    cut = distill_cli._student_config(argparse.Namespace(**base, image_size=None, pairs=None, image_blocks="15"))
    assert (cut.model.image_blocks, cut.model.image_channels) == (15, 192)
    for bad in ("0", "17", "x"):
        with pytest.raises(CliError, match=f"--image-blocks {bad}"):
            distill_cli._student_config(argparse.Namespace(**base, image_size=None, pairs=None, image_blocks=bad))
    with pytest.raises(CliError, match="--image-size 16"):
        distill_cli._student_config(argparse.Namespace(**base, image_size=16, pairs=None))
    with pytest.raises(CliError, match="--pairs -1"):
        distill_cli._student_config(argparse.Namespace(**base, image_size=None, pairs=-1))
    assert default.loss.hidden == 0.0
    hidden = distill_cli._student_config(argparse.Namespace(**base, image_size=None, pairs=None, hidden_weight=0.5))
    assert hidden.loss.hidden == 0.5
    ablated = distill_cli._student_config(argparse.Namespace(**{**base, "ablation": "no-rationale"}, image_size=None,
                                                             pairs=None, hidden_weight=0.5))
    assert ablated.loss.hidden == 0.5 and ablated.loss.patch_teacher == 0.0 and ablated.loss.align == 0.0
    with pytest.raises(CliError, match="--hidden-weight -1"):
        distill_cli._student_config(argparse.Namespace(**base, image_size=None, pairs=None, hidden_weight=-1.0))
    relation = distill_cli._student_config(argparse.Namespace(**base, image_size=None, pairs=None, relation_weight=1.0))
    assert relation.loss.relation == 1.0 and relation.loss.hidden == 0.0 and default.loss.relation == 0.0
    with pytest.raises(CliError, match="--relation-weight -2"):
        distill_cli._student_config(argparse.Namespace(**base, image_size=None, pairs=None, relation_weight=-2.0))


def test_teacher_passes_and_student_all_take_the_number_of_transfer_pairs():
    pytest.importorskip("torch")
    from crisislens.runtime.cli import build_parser

    parser = build_parser()
    for command in ("teacher-outputs", "teacher-alignment", "student", "eval-student"):
        args = parser.parse_args(["distill", command, "--pairs", "10", "--alignment", "a.npz"])
        assert args.pairs == 10 and str(args.alignment) == "a.npz", command
    assert parser.parse_args(["distill", "teacher-alignment", "--states"]).states
    assert not parser.parse_args(["distill", "teacher-alignment"]).states
    assert parser.parse_args(["distill", "student", "--hidden-weight", "0.5"]).hidden_weight == 0.5


def test_a_reader_that_leaves_early_stops_the_command_quietly(tmp_path):
    """`crisislens validate ... | head`: no traceback when the pipe closes, exit 141 (128 + SIGPIPE)."""
    import json
    import subprocess
    import sys

    rows = tmp_path / "p.jsonl"
    rows.write_text("".join(json.dumps({"id": "same", "text": "x"}) + "\n" for _ in range(3000)))  # 2999 errors
    proc = subprocess.Popen([sys.executable, "-m", "crisislens.runtime", "validate", "--json", str(rows)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"{"
    proc.stdout.close()  # far more than a pipe buffer is still to come
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err
