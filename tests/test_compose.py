"""docker-compose.yml and the Dockerfile agree with each other and with the code.

There is no Docker engine here, so this reads the files: the five services, what they run,
the environment the workers get (which must build valid ``Settings``), and their order.
"""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from treasury.broker.options import WorkerOptions
from treasury.cli.main import cli
from treasury.settings import Settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return compose["services"]  # type: ignore[no-any-return]


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def _option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_five_services_with_their_images(services: dict[str, Any]) -> None:
    assert set(services) == {"redis", "postgres", "simulator", "worker", "beat"}
    assert services["redis"]["image"] == "redis:7"
    assert services["postgres"]["image"] == "postgres:16"
    for name in ("simulator", "worker", "beat"):
        assert services[name]["build"] == ".", name  # the repository's Dockerfile
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "\nFROM python:3.11-slim\n" in dockerfile
    assert "pip install ." in dockerfile


def test_redis_keeps_messages_and_never_evicts(services: dict[str, Any]) -> None:
    cmd = _command(services["redis"])
    assert _option(cmd, "--appendonly") == "yes"
    assert _option(cmd, "--maxmemory-policy") == "noeviction"


def test_commands_are_treasury_commands(services: dict[str, Any]) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for name, sub in (("simulator", "simulator"), ("worker", "worker"), ("beat", "beat")):
        cmd = _command(services[name])
        assert cmd[0] in scripts and cmd[1] == sub, cmd
        assert sub in cli.commands, f"`treasury {sub}` does not exist"
    sim = _command(services["simulator"])
    assert _option(sim, "--host") == "0.0.0.0"
    assert _option(sim, "--state") == "/app/config/simulator.yaml"


@pytest.mark.parametrize("name", ["worker", "beat"])
def test_worker_environment_points_at_the_other_services(
    services: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = services[name]["environment"]
    broker = urlsplit(env["TREASURY_BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.port or 6379) == ("redis", "redis", 6379)
    db = urlsplit(env["TREASURY_DATABASE_URL"])
    assert (db.scheme, db.hostname, db.path) == ("postgresql+psycopg", "postgres", "/treasury")
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "treasury"
    sim = urlsplit(env["TREASURY_BASE_URL"])
    assert (sim.hostname, str(sim.port)) == ("simulator", _option(_command(services["simulator"]), "--port"))
    assert env["TREASURY_CONFIG_DIR"] == "/app/config" and env["TREASURY_WORKFLOWS_DIR"] == "/app/workflows"
    assert set(services[name]["depends_on"]) == {"redis", "postgres", "simulator"}
    # the workflow files are the host's, so beat follows edits without a rebuild
    assert f"./workflows:{env['TREASURY_WORKFLOWS_DIR']}:ro" in services[name]["volumes"]
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    settings.check()  # a broker with a shared simulator URL: accepted
    assert settings.broker_url is not None
    WorkerOptions()


def test_workers_get_time_to_finish_in_flight_steps(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"  # Celery's warm shutdown
    grace = worker["stop_grace_period"]
    assert grace.endswith("m") and int(grace[:-1]) >= 2


def test_workers_and_beat_share_a_checkpoint_volume(services: dict[str, Any]) -> None:
    folders = set()
    for name in ("worker", "beat"):
        folder = services[name]["environment"]["TREASURY_CHECKPOINT_DIR"]
        mounts = [v.split(":") for v in services[name]["volumes"]]
        assert any(m[0] == "audit-checkpoints" and folder.startswith(m[1] + "/") for m in mounts), name
        folders.add(folder)
    assert len(folders) == 1
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert "audit-checkpoints" in compose["volumes"]
    # the volume is created from the image's folder, which the unprivileged user must own
    assert "mkdir -p /var/lib/treasury" in (REPO / "Dockerfile").read_text()
    assert "chown -R treasury /app /var/lib/treasury" in (REPO / "Dockerfile").read_text()


@pytest.mark.parametrize("name", ["worker", "beat"])
def test_worker_and_beat_are_healthy_when_their_readyz_answers(services: dict[str, Any], name: str) -> None:
    service = services[name]
    port = service["environment"]["TREASURY_METRICS_PORT"]
    probe = " ".join(service["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in probe
    assert service["environment"]["TREASURY_METRICS_HOST"] == "0.0.0.0"  # Prometheus scrapes from outside
    assert service["depends_on"]["simulator"] == {"condition": "service_healthy"}
    sim = services["simulator"]
    assert f":{_option(_command(sim), '--port')}/api/v1/time" in " ".join(sim["healthcheck"]["test"])
    scrape = yaml.safe_load((REPO / "deploy" / "monitoring" / "prometheus.yml").read_text())
    assert f"{name}:{port}" in scrape["scrape_configs"][0]["static_configs"][0]["targets"]
