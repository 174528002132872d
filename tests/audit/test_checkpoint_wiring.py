"""Where checkpoints and the server key live, per environment, and how the runner starts with them."""

from __future__ import annotations

import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from tests.audit.helpers import seed
from treasury.audit.anchoring import installed
from treasury.audit.checkpoints import CheckpointStore
from treasury.audit.server_key import ServerKey, key_id
from treasury.cli.audit import register
from treasury.cli.context import AppContext
from treasury.clock import ManualClock
from treasury.errors import ConfigError
from treasury.runtime import attach_checkpointer, build_runtime, checkpoint_dir, open_engine
from treasury.settings import Environment, Settings

CONFIG = Path(__file__).resolve().parents[2] / "config"


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(config_dir=CONFIG, database_url=f"sqlite:///{tmp_path / 'treasury.db'}",
                    **kw)  # type: ignore[arg-type]


def test_the_embedded_default_anchors_beside_its_sqlite_file(tmp_path: Path) -> None:
    rt = build_runtime(_settings(tmp_path), clock=ManualClock())
    assert rt.checkpointer is not None and installed(rt.engine) is rt.checkpointer
    folder = tmp_path / "treasury.db.checkpoints"
    assert rt.checkpointer.store.path == folder
    key = tmp_path / "treasury.db.checkpoints.key"  # beside the public directory, not in it
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    public = CheckpointStore(folder).public_key()
    assert public is not None and key_id(public) == key_id(ServerKey(key, create=False).load().public_key())
    seed(rt.engine, 3)
    assert CheckpointStore(folder).seqs() == [1]


def test_settings_choose_the_directory_the_key_and_the_rhythm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREASURY_CHECKPOINT_DIR", str(tmp_path / "anchors"))
    monkeypatch.setenv("TREASURY_SERVER_KEY_FILE", str(tmp_path / "keys" / "server.pem"))
    monkeypatch.setenv("TREASURY_CHECKPOINT_EVERY_EVENTS", "2")
    monkeypatch.setenv("TREASURY_CHECKPOINT_EVERY_SECONDS", "30")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}")
    engine = open_engine(settings, ManualClock())
    cp = installed(engine)
    assert cp is not None and (cp.every_events, cp.every_seconds) == (2, 30.0)
    seed(engine, 6)
    assert cp.store.path == tmp_path / "anchors" and cp.store.seqs() == [1, 2, 4]
    assert (tmp_path / "keys" / "server.pem").exists()


def test_other_databases_need_a_directory(pg_engine: Engine, tmp_path: Path) -> None:
    assert checkpoint_dir(Settings(), pg_engine) is None  # simulator: anchoring off, verify says so
    assert checkpoint_dir(Settings(checkpoint_dir=tmp_path), pg_engine) == tmp_path
    with pytest.raises(ConfigError, match="TREASURY_CHECKPOINT_DIR"):
        checkpoint_dir(Settings(env=Environment.PRODUCTION), pg_engine)


def test_production_refuses_to_start_without_directory_or_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TREASURY_CHECKPOINT_DIR"):
        build_runtime(_settings(tmp_path, env=Environment.PRODUCTION))
    settings = _settings(tmp_path, env=Environment.PRODUCTION, checkpoint_dir=tmp_path / "cp")
    with pytest.raises(ConfigError, match="TREASURY_SERVER_KEY_FILE"):
        build_runtime(settings)
    missing = _settings(tmp_path, env=Environment.PRODUCTION, checkpoint_dir=tmp_path / "cp",
                        server_key_file=tmp_path / "absent.key")
    cp = attach_checkpointer(missing, _bare_engine(tmp_path), ManualClock())
    assert cp is not None
    with pytest.raises(ConfigError, match=r"TREASURY_SERVER_KEY_FILE.*does not exist"):
        cp.ready()
    assert not (tmp_path / "absent.key").exists()  # never generated in production


def _bare_engine(tmp_path: Path) -> Engine:
    from treasury.schema import create_schema
    from treasury.store.db import make_engine

    tmp_path.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    create_schema(engine)
    return engine


def test_production_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        ServerKey(key, create=False, production=True).load()
    ServerKey(key, create=False).load()  # elsewhere: a warning
    key.chmod(0o600)
    ServerKey(key, create=False, production=True).load()


def test_a_directory_of_another_key_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path, checkpoint_dir=tmp_path / "cp", server_key_file=tmp_path / "a.key")
    cp = attach_checkpointer(settings, _bare_engine(tmp_path), ManualClock())
    assert cp is not None
    cp.ready()
    other = _settings(tmp_path, checkpoint_dir=tmp_path / "cp", server_key_file=tmp_path / "b.key")
    cp2 = attach_checkpointer(other, _bare_engine(tmp_path / "x"), ManualClock())
    assert cp2 is not None
    with pytest.raises(ConfigError, match="holds checkpoints signed by"):
        cp2.ready()


def test_the_checkpoint_command(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    clock = ManualClock()
    engine = open_engine(settings, clock)
    seed(engine, 3, clock=clock)
    group = click.Group()
    register(group)

    def run(*args: str) -> str:
        app = AppContext(settings=settings, clock=clock, _engine=engine)
        result = CliRunner().invoke(group, ["audit", *args], obj=app, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "wrote" in run("checkpoint") and "seq 3" in run("verify")
    assert "nothing new to checkpoint" in run("checkpoint")
    assert CheckpointStore(tmp_path / "treasury.db.checkpoints").seqs() == [1, 3]


def test_the_sweeper_anchors_a_quiet_log(tmp_path: Path) -> None:
    from treasury.broker.options import WorkerOptions
    from treasury.worker.process import WorkerRuntime, sweep_once

    clock = ManualClock()
    rt = build_runtime(_settings(tmp_path), clock=clock)
    wrt = WorkerRuntime(runtime=rt, dispatcher=None, options=WorkerOptions(), beat=None)  # type: ignore[arg-type]
    seed(rt.engine, 3, clock=clock)
    assert "checkpoints" not in sweep_once(wrt)  # not due yet
    clock.advance(rt.settings.checkpoint_every_seconds)
    assert sweep_once(wrt)["checkpoints"] == 1
    assert CheckpointStore(tmp_path / "treasury.db.checkpoints").seqs() == [1, 3]


def test_the_wal_is_synced_before_a_checkpoint_vouches_for_a_head(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # synchronous=NORMAL leaves recent commits unsynced; a checkpoint ahead of the chain after a
    # power loss would make the chain BROKEN, so the WAL is fsync'd before each file is written
    import os

    rt = build_runtime(_settings(tmp_path), clock=ManualClock())
    folder = tmp_path / "treasury.db.checkpoints"
    wal = os.path.realpath(tmp_path / "treasury.db-wal")
    synced: list[list[int]] = []  # the checkpoint files that existed at each sync of the WAL
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.path.realpath(f"/proc/self/fd/{fd}") == wal:
            synced.append(CheckpointStore(folder).seqs())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    seed(rt.engine, 3)
    assert CheckpointStore(folder).seqs() == [1]
    assert synced and synced[0] == []  # the WAL was synced before checkpoint 1 was written
