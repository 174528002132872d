"""SSHSIG against the real OpenSSH binary, both directions; hardware-key signatures; ssh-agent."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from treasury.people import sshsig
from treasury.people.identity import load_identity, load_key_file, write_key_file

SSH_KEYGEN = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(
    SSH_KEYGEN is None and os.environ.get("CI") != "true", reason="ssh-keygen (openssh-client) is not installed")
MESSAGE = b'{"kind":"approve","person":"alice","v":1}'


def _keygen(path: Path, comment: str = "alice@laptop") -> None:
    assert SSH_KEYGEN is not None
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)


@needs_ssh_keygen
def test_a_signature_made_by_ssh_keygen_verifies(tmp_path: Path) -> None:
    _keygen(tmp_path / "k")
    (tmp_path / "doc").write_bytes(MESSAGE)
    subprocess.run([SSH_KEYGEN, "-Y", "sign", "-n", "treasury", "-f", str(tmp_path / "k"), str(tmp_path / "doc")],
                   check=True, capture_output=True)
    public = sshsig.parse_public_key((tmp_path / "k.pub").read_text())
    armored = (tmp_path / "doc.sig").read_text()
    assert sshsig.verify(armored, MESSAGE, [public]) == public
    with pytest.raises(sshsig.SignatureError, match="does not match"):
        sshsig.verify(armored, MESSAGE + b" ", [public])


@needs_ssh_keygen
def test_a_signature_made_here_verifies_with_ssh_keygen(tmp_path: Path) -> None:
    assert SSH_KEYGEN is not None
    _keygen(tmp_path / "k")
    signer = load_key_file(tmp_path / "k")
    (tmp_path / "doc.sig").write_text(signer.sign(MESSAGE))
    (tmp_path / "allowed").write_text(f"alice {(tmp_path / 'k.pub').read_text()}")
    ok = subprocess.run([SSH_KEYGEN, "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "alice", "-n", "treasury",
                         "-s", str(tmp_path / "doc.sig")], input=MESSAGE, capture_output=True)
    assert ok.returncode == 0, ok.stderr
    wrong_ns = subprocess.run([SSH_KEYGEN, "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "alice", "-n", "git",
                               "-s", str(tmp_path / "doc.sig")], input=MESSAGE, capture_output=True)
    assert wrong_ns.returncode != 0


@needs_ssh_keygen
def test_a_key_written_here_is_read_by_ssh_keygen(tmp_path: Path) -> None:
    assert SSH_KEYGEN is not None
    public = write_key_file(tmp_path / "k", Ed25519PrivateKey.generate(), "bob@demo")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    out = subprocess.run([SSH_KEYGEN, "-l", "-f", str(tmp_path / "k.pub")], capture_output=True, text=True, check=True)
    assert public.fingerprint in out.stdout


def test_another_namespace_another_key_and_garbage_are_refused() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = sshsig.public_key_of(key)
    with pytest.raises(sshsig.SignatureError, match="namespace 'git'"):
        sshsig.verify(sshsig.sign(key, MESSAGE, namespace="git"), MESSAGE, [public])
    with pytest.raises(sshsig.SignatureError, match="not one of the person's keys"):
        sshsig.verify(sshsig.sign(other, MESSAGE), MESSAGE, [public])
    with pytest.raises(sshsig.SignatureError, match="not an SSH signature"):
        sshsig.verify("hello", MESSAGE, [public])


def _sk_signature(key: Ed25519PrivateKey, message: bytes, flags: int, application: bytes = b"ssh:") -> tuple[str, str]:
    """What a FIDO key (sk-ssh-ed25519@openssh.com) produces, made with a software key."""
    s = sshsig._string
    raw = sshsig.public_key_of(key).blob[-32:]
    blob = s(sshsig.SK_ED25519.encode()) + s(raw) + s(application)
    counter = struct.pack(">I", 7)
    data = hashlib.sha256(application).digest() + bytes([flags]) + counter + hashlib.sha256(
        sshsig.signed_data(message)).digest()
    sig = s(sshsig.SK_ED25519.encode()) + s(key.sign(data)) + bytes([flags]) + counter
    public = sshsig.PublicKey(sshsig.SK_ED25519, blob, "alice@yubikey")
    return public.openssh(), sshsig.armor(public, sig)


def test_hardware_key_signatures_verify_and_need_user_presence(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    line, armored = _sk_signature(key, MESSAGE, flags=0x01)
    public = sshsig.parse_public_key(line)
    assert sshsig.verify(armored, MESSAGE, [public]) == public
    with pytest.raises(sshsig.SignatureError, match="does not match"):
        sshsig.verify(armored, MESSAGE + b"x", [public])
    _, no_touch = _sk_signature(key, MESSAGE, flags=0x00)
    with pytest.raises(sshsig.SignatureError, match="user presence"):
        sshsig.verify(no_touch, MESSAGE, [public])
    if SSH_KEYGEN is not None:  # and OpenSSH agrees that it is a good sk signature
        (tmp_path / "doc.sig").write_text(armored)
        (tmp_path / "allowed").write_text(f"alice {line}\n")
        ok = subprocess.run([SSH_KEYGEN, "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "alice", "-n",
                             "treasury", "-s", str(tmp_path / "doc.sig")], input=MESSAGE, capture_output=True)
        assert ok.returncode == 0, ok.stderr


@pytest.mark.skipif(shutil.which("ssh-agent") is None or SSH_KEYGEN is None, reason="ssh-agent/ssh-add not installed")
def test_ssh_agent_signs_for_agent_comment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _keygen(tmp_path / "k", comment="alice@agent")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.01"], check=True)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(tmp_path / "k")], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        signer = load_identity("agent:alice@agent")
        public = sshsig.parse_public_key((tmp_path / "k.pub").read_text())
        assert sshsig.verify(signer.sign(MESSAGE), MESSAGE, [public]) == public
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=10)
