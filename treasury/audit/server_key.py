"""The server's own Ed25519 key, which signs audit checkpoints.

The private key is a PEM (PKCS#8) file, as ``openssl genpkey -algorithm ed25519`` writes it.
Outside production a missing file is generated on first use (mode 0600); in production it
must exist, because a key that appears by itself would sign whatever chain the database
holds. The public key travels next to the checkpoints, but an auditor should pin it out of
band: whoever can replace both the checkpoints and that file can otherwise sign anything.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from treasury.errors import ConfigError

log = logging.getLogger("treasury.audit")

KEY_SETTING = "TREASURY_SERVER_KEY_FILE"


def key_id(public: Ed25519PublicKey) -> str:
    """``sha256:<hex>`` of the raw 32-byte public key: how checkpoints and people name a key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def public_pem(public: Ed25519PublicKey) -> bytes:
    """The public key as PEM (SubjectPublicKeyInfo)."""
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key (PEM); raises ConfigError naming the file."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read the public key ({exc.strerror})", source=str(path)) from None
    except ValueError:
        raise ConfigError("not a PEM public key", source=str(path)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("not an Ed25519 public key", source=str(path))
    return key


def verifies(public: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public``'s Ed25519 signature of ``message``."""
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class ServerKey:
    """Where the private key lives and whether this environment may create it."""

    path: Path
    create: bool
    production: bool = False

    def load(self) -> Ed25519PrivateKey:
        """Read the key, generating it first when allowed.

        Raises:
            ConfigError: the file is missing (and may not be generated), unreadable, not an
                Ed25519 PEM private key, or readable by others in production. The message
                names the file and ``TREASURY_SERVER_KEY_FILE``.
        """
        if not self.path.exists():
            if not self.create:
                raise ConfigError(
                    f"the server key {self.path} does not exist; production needs an Ed25519 key made "
                    "beforehand (openssl genpkey -algorithm ed25519 -out FILE; chmod 600 FILE)",
                    source="environment", field=KEY_SETTING,
                )
            self._generate()
        try:
            mode = self.path.stat().st_mode
            data = self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path} ({exc.strerror})", source="environment",
                              field=KEY_SETTING) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            message = f"{self.path} is readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it"
            if self.production:
                raise ConfigError(message, source="environment", field=KEY_SETTING)
            log.warning("server key: %s", message)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigError(f"{self.path} is not an unencrypted PEM private key", source="environment",
                              field=KEY_SETTING) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{self.path} is not an Ed25519 key", source="environment", field=KEY_SETTING)
        return key

    def _generate(self) -> None:
        """Write a new key with mode 0600; when processes race, the first one's key wins."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.path)  # never replaces a key another process made meanwhile
            except FileExistsError:
                return
            log.warning("server key: generated %s (keep it; checkpoints are signed with it)", self.path)
        finally:
            tmp.unlink(missing_ok=True)
