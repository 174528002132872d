"""One bounded loader: huge, endless and non-UTF-8 files are refused with the file named, never read whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runs.conftest import ROOT
from treasury.errors import ConfigError, FileRefused, WorkflowInvalid
from treasury.files import load_text, read_bounded
from treasury.language.loader import read_workflow_text

ENDLESS = "/dev/zero"
# run the command with its address space capped, so a regression fails instead of eating the machine
LIMITED = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
           "from treasury.cli.main import main; main()")


def _treasury(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_")}
    env.update(TREASURY_CONFIG_DIR=str(ROOT / "config"), TREASURY_DATABASE_URL=f"sqlite:///{tmp_path / 't.db'}")
    return subprocess.run([sys.executable, "-c", LIMITED, *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def test_read_bounded_stops_after_the_limit() -> None:
    assert read_bounded(ROOT / "config" / "policy.yaml", 1 << 20).startswith(b"#")
    with pytest.raises(FileRefused, match=r"^/dev/zero: the file is larger than 1024 bytes.*1 KiB") as info:
        read_bounded(ENDLESS, 1024)
    assert info.value.too_large and isinstance(info.value, ConfigError) and info.value.exit_code == 2


def test_missing_folder_pipe_and_bad_utf8_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(FileRefused, match="file not found") as info:
        read_bounded(tmp_path / "nope.yaml", 10)
    assert info.value.missing
    with pytest.raises(FileRefused, match="it is a folder"):
        read_bounded(tmp_path, 10)
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(FileRefused, match="pipe"):  # refused at once, not waiting for a writer
        read_bounded(fifo, 10)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: x\nab: \xff\n")
    with pytest.raises(FileRefused, match=rf"^{bad}:2:5: the file is not valid UTF-8 text$"):
        load_text(bad, 100)
    with pytest.raises(WorkflowInvalid, match=r":2:5: the file is not valid UTF-8"):
        read_workflow_text(bad)


def test_every_config_loader_is_bounded() -> None:
    # in a capped subprocess: a loader that reads the whole file must fail here, not eat the machine
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from pathlib import Path\n"
            "from treasury.errors import ConfigError\n"
            "from treasury.policy import load_policy\n"
            "from treasury.simulator import load_state\n"
            "from treasury.simulator.faults import load_faults\n"
            "from treasury.yamlfile import load_yaml\n"
            "for load in (load_yaml, load_policy, load_state, load_faults):\n"
            "    try:\n"
            "        load(Path('/dev/zero'))\n"
            "    except ConfigError as exc:\n"
            "        assert '/dev/zero' in str(exc), exc\n"
            "        print('refused', load.__name__)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.split("\n")[:4] == [f"refused {n}" for n in ("load_yaml", "load_policy", "load_state",
                                                                     "load_faults")]


def test_run_refuses_a_non_utf8_file_like_validate(tmp_path: Path) -> None:
    wf = tmp_path / "latin1.yaml"
    wf.write_bytes((ROOT / "workflows" / "vendor-payout.yaml").read_bytes().replace(b"Pay", b"Pay \xe9", 1))
    for command in ("run", "validate"):
        proc = _treasury(tmp_path, command, str(wf))
        assert proc.returncode == 2, (command, proc.stderr)
        assert f"{wf}:" in proc.stderr + proc.stdout and "not valid UTF-8" in proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr


def test_run_and_validate_refuse_an_endless_file_without_reading_it(tmp_path: Path) -> None:
    for command in ("run", "validate"):
        proc = _treasury(tmp_path, command, ENDLESS)
        assert proc.returncode == 2, (command, proc.stderr[-500:])
        assert "limited to 256 KiB" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


def test_beat_skips_an_oversized_or_non_utf8_file_naming_it(tmp_path: Path) -> None:
    from treasury.schedules.beat import ScheduleLoader

    (tmp_path / "big.yaml").write_bytes(b"#" * (300 * 1024))
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    specs, invalid = ScheduleLoader(tmp_path, service=None).load()
    errors = dict(invalid)
    assert specs == [] and set(errors) == {str(tmp_path / "big.yaml"), str(tmp_path / "latin1.yaml")}
    assert "limited to 256 KiB" in errors[str(tmp_path / "big.yaml")]
    assert errors[str(tmp_path / "latin1.yaml")].startswith(f"{tmp_path / 'latin1.yaml'}:1:10: the file is not valid")
