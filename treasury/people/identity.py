"""Whose key signs a decision: a key file, or a key held by ssh-agent (``agent:COMMENT``).

The private key never leaves the person's machine: with ``agent:COMMENT`` the agent signs
(``SSH_AUTH_SOCK``, the ssh-agent protocol), and with a file it is read here only to sign.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from treasury.errors import ConfigError
from treasury.people import sshsig
from treasury.people.sshsig import PublicKey

AGENT_PREFIX = "agent:"
_REQUEST_IDENTITIES, _IDENTITIES_ANSWER, _SIGN_REQUEST, _SIGN_RESPONSE = 11, 12, 13, 14


class Signer(Protocol):
    """Signs a message as SSHSIG (namespace ``treasury``) with one key."""

    @property
    def public(self) -> PublicKey: ...

    def sign(self, message: bytes) -> str: ...


@dataclass(frozen=True)
class KeyFileSigner:
    """An unencrypted OpenSSH Ed25519 private key file (``ssh-keygen -t ed25519 -N ''``)."""

    path: Path
    key: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        return sshsig.public_key_of(self.key)

    def sign(self, message: bytes) -> str:
        return sshsig.sign(self.key, message)


def load_key_file(path: Path) -> KeyFileSigner:
    """Read an identity key file.

    Raises:
        ConfigError: missing, unreadable, passphrase-protected, or not Ed25519 (names the file).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the identity key: {exc.strerror}", source=str(path)) from None
    try:
        key = load_ssh_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        hint = (" (a passphrase-protected key must be used through ssh-agent: "
                "ssh-add it and use agent:COMMENT)" if b"ENCRYPTED" in data or "password" in str(exc) else "")
        raise ConfigError(f"not an unencrypted OpenSSH private key{hint}", source=str(path)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("only Ed25519 keys are supported (ssh-keygen -t ed25519)", source=str(path))
    return KeyFileSigner(path, key)


def write_key_file(path: Path, key: Ed25519PrivateKey, comment: str) -> PublicKey:
    """Write ``key`` as an OpenSSH private key file (mode 0600) and its ``.pub``; returns the public key."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    pem = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(path, 0o600)
    public = sshsig.public_key_of(key, comment)
    Path(f"{path}.pub").write_text(public.openssh() + "\n")
    return public


class _Agent:
    """The ssh-agent protocol over ``SSH_AUTH_SOCK`` (identities and sign requests only)."""

    def __init__(self, sock_path: str) -> None:
        self.sock_path = sock_path

    def _call(self, payload: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(self.sock_path)
            s.sendall(struct.pack(">I", len(payload)) + payload)
            head = _recv(s, 4)
            return _recv(s, struct.unpack(">I", head)[0])

    def identities(self) -> list[PublicKey]:
        answer = self._call(bytes([_REQUEST_IDENTITIES]))
        if not answer or answer[0] != _IDENTITIES_ANSWER:
            raise ConfigError("ssh-agent refused to list its keys", source="SSH_AUTH_SOCK")
        r = sshsig._Reader(answer[1:])
        out = []
        for _ in range(r.uint32()):
            blob, comment = r.string(), r.string().decode(errors="replace")
            kind = sshsig._Reader(blob).string().decode(errors="replace")
            out.append(PublicKey(kind, blob, comment))
        return out

    def sign(self, key: PublicKey, data: bytes) -> bytes:
        answer = self._call(bytes([_SIGN_REQUEST]) + sshsig._string(key.blob) + sshsig._string(data)
                            + struct.pack(">I", 0))
        if not answer or answer[0] != _SIGN_RESPONSE:
            raise ConfigError(f"ssh-agent refused to sign with {key.fingerprint}", source="SSH_AUTH_SOCK")
        return sshsig._Reader(answer[1:]).string()


def _recv(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConfigError("ssh-agent closed the connection", source="SSH_AUTH_SOCK")
        out += chunk
    return out


@dataclass(frozen=True)
class AgentSigner:
    """A key held by ssh-agent, chosen by its comment."""

    agent: _Agent
    key: PublicKey

    @property
    def public(self) -> PublicKey:
        return self.key

    def sign(self, message: bytes) -> str:
        blob = self.agent.sign(self.key, sshsig.signed_data(message))
        return sshsig.armor(self.key, blob)


def agent_signer(comment: str, sock_path: str | None = None) -> AgentSigner:
    """The agent key whose comment is ``comment``.

    Raises:
        ConfigError: no agent, or no (or more than one) supported key with that comment.
    """
    path = sock_path or os.environ.get("SSH_AUTH_SOCK")
    if not path:
        raise ConfigError("no ssh-agent: SSH_AUTH_SOCK is not set", source="TREASURY_IDENTITY")
    agent = _Agent(path)
    try:
        keys = [k for k in agent.identities() if k.comment == comment and k.type in sshsig.KEY_TYPES]
    except OSError as exc:
        raise ConfigError(f"cannot reach ssh-agent: {exc.strerror or exc}", source="SSH_AUTH_SOCK") from None
    if len(keys) != 1:
        found = "no" if not keys else f"{len(keys)}"
        raise ConfigError(f"ssh-agent holds {found} Ed25519 key(s) with comment {comment!r}",
                          source="TREASURY_IDENTITY")
    return AgentSigner(agent, keys[0])


def load_identity(spec: str) -> Signer:
    """``agent:COMMENT`` or a key file path (the value of ``TREASURY_IDENTITY`` / ``--identity``).

    Raises:
        ConfigError: naming the file or the agent problem.
    """
    if spec.startswith(AGENT_PREFIX):
        return agent_signer(spec[len(AGENT_PREFIX):])
    return load_key_file(Path(spec).expanduser())
