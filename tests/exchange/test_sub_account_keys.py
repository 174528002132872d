"""``sub_accounts:`` in keys.yaml: one template makes a profile per sub-account, each with its
own key and secret reference; today's ``profiles:`` stay valid; problems are located."""

from __future__ import annotations

from pathlib import Path

import pytest

from treasury.errors import ConfigError
from treasury.keys import load_key_specs
from treasury.models import Permission

COMPACT = """\
profiles:
  master: {api_key: m, secret_env: TREASURY_SECRET_MASTER, permissions: [read, transfer]}
sub_accounts:
  - name: "sub-{account}"
    accounts: {from: 2001, count: 50}
    api_key: "key-{account}"
    secret_env: "TREASURY_SECRET_SUB_{account}"
    permissions: [read, transfer]
    fund_statement: false
  - name: "desk-{account}"
    accounts: ["hk", "sg"]
    api_key: "desk-{account}"
    secret_file: "secrets/desk-{account}.secret"
    account_id: null
    permissions: [read]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    return path


def test_a_template_makes_one_profile_per_sub_account(tmp_path: Path) -> None:
    specs = load_key_specs(write(tmp_path, COMPACT))
    assert len(specs) == 1 + 50 + 2
    sub = specs["sub-2017"]
    assert (sub.name, sub.api_key, sub.secret_env, sub.account_id) == (
        "sub-2017", "key-2017", "TREASURY_SECRET_SUB_2017", "2017")
    assert sub.permissions == {Permission.READ, Permission.TRANSFER} and not sub.fund_statement
    assert specs["sub-2050"].api_key == "key-2050" and "sub-2051" not in specs
    desk = specs["desk-sg"]
    assert desk.secret_file == (tmp_path / "secrets/desk-sg.secret").resolve() and desk.account_id is None
    assert specs["master"].secret_env == "TREASURY_SECRET_MASTER"  # today's profiles unchanged
    profile = sub.resolve({"TREASURY_SECRET_SUB_2017": "s3cret"})
    assert profile.secret.get_secret_value() == "s3cret" and "s3cret" not in repr(profile)


def test_a_file_of_templates_alone_is_valid(tmp_path: Path) -> None:
    text = COMPACT.split("sub_accounts:", 1)[1]
    assert len(load_key_specs(write(tmp_path, "sub_accounts:" + text))) == 52


def test_a_file_with_neither_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give profiles"):
        load_key_specs(write(tmp_path, "other: 1\n"))


BROKEN = """\
profiles:
  sub-7: {api_key: k, secret_env: A, permissions: [read]}
sub_accounts:
  - name: "sub-{account}"
    accounts: ["6", "7"]
    api_key: "k-{account}"
    secret_env: "S_{account}"
    permissions: [read]
  - name: "same"
    accounts: {from: 1, count: 2}
    api_key: "k"
    secret_env: "S_{account}"
    permissions: [read, trading]
  - name: "x-{account}"
    accounts: ["1"]
    api_key: "k-{account}"
    secret_env: "S_{account}"
    secret_file: "f-{account}"
    permissions: [read]
  - name: "y-{account}"
    accounts: {from: 1, count: 1000000}
    api_key: "k-{account}"
    secret_env: "S_{account}"
    permissions: [read]
    colour: blue
"""


def test_every_problem_in_a_template_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    with pytest.raises(ConfigError) as info:
        load_key_specs(path)
    lines = str(info.value).splitlines()
    assert info.value.source == str(path)
    assert any(x.startswith(f"{path}:9:11: must contain {{account}}") and "(sub_accounts[1].name)" in x
               for x in lines)
    assert any(x.startswith(f"{path}:11:14: must contain {{account}}") for x in lines)  # api_key
    assert any(x.startswith(f"{path}:13:25: ") and "(sub_accounts[1].permissions[1])" in x for x in lines)
    assert any(x.startswith(f"{path}:21:15: ") and "sub_accounts[3].accounts" in x for x in lines)  # count
    assert any(x.startswith(f"{path}:25:5: Extra inputs are not permitted (sub_accounts[3].colour)")
               for x in lines)
    assert len(lines) >= 5


def test_an_expansion_problem_names_the_account_and_the_template(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN.split("  - name: \"same\"")[0] + BROKEN.split("[read, trading]\n")[1]
                 .split("  - name: \"y-")[0])
    with pytest.raises(ConfigError) as info:
        load_key_specs(path)
    lines = str(info.value).splitlines()
    assert any(x.startswith(f"{path}:4:11: profile 'sub-7' is declared twice (sub_accounts[0].name)")
               for x in lines), lines
    assert any(x.startswith(f"{path}:9:5: give exactly one of secret_env or secret_file (for account '1')")
               for x in lines), lines
