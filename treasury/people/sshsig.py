"""SSHSIG: the signature format of ``ssh-keygen -Y sign`` (pure; no I/O).

Spec: OpenSSH ``PROTOCOL.sshsig``. A signature covers a blob made of the magic ``SSHSIG``,
the namespace (``treasury``), the hash algorithm and the hash of the message, so a signature
made for git or for another program never verifies here, and ``ssh-keygen -Y sign -n
treasury`` / ``ssh-keygen -Y verify`` interoperate with this module in both directions.

Key types: ``ssh-ed25519`` (sign and verify) and ``sk-ssh-ed25519@openssh.com`` (a FIDO
hardware key: verify only; the signature also covers the key's application, its flags and a
counter, and we require the user-presence flag).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAGIC = b"SSHSIG"
NAMESPACE = "treasury"
ED25519 = "ssh-ed25519"
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
KEY_TYPES = (ED25519, SK_ED25519)
_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_END = "-----END SSH SIGNATURE-----"
_HASHES = {"sha512": hashlib.sha512, "sha256": hashlib.sha256}
_USER_PRESENT = 0x01


class SignatureError(ValueError):
    """A signature or key that cannot be read or does not verify (the message says which)."""


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise SignatureError("truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def string(self) -> bytes:
        return self.take(self.uint32())

    def done(self) -> bool:
        return self.pos == len(self.data)


@dataclass(frozen=True)
class PublicKey:
    """An OpenSSH public key: its type, wire blob and comment."""

    type: str
    blob: bytes
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        """``SHA256:…`` as ``ssh-keygen -l`` prints it."""
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")

    def openssh(self) -> str:
        """The ``authorized_keys`` line (type, base64 blob, comment)."""
        line = f"{self.type} {base64.b64encode(self.blob).decode()}"
        return f"{line} {self.comment}" if self.comment else line

    def _parts(self) -> tuple[bytes, bytes]:
        """(raw Ed25519 public key, application) from the blob."""
        r = _Reader(self.blob)
        if r.string().decode() != self.type:
            raise SignatureError("key type and blob disagree")
        raw = r.string()
        application = r.string() if self.type == SK_ED25519 else b""
        if len(raw) != 32 or not r.done():
            raise SignatureError("not an Ed25519 key")
        return raw, application


def parse_public_key(line: str) -> PublicKey:
    """Read one ``authorized_keys``-style line (``ssh-ed25519 AAAA… comment``).

    Raises:
        SignatureError: unsupported type or a blob that does not decode.
    """
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise SignatureError("must be written TYPE BASE64 [COMMENT], e.g. 'ssh-ed25519 AAAAC3Nz… alice@laptop'")
    kind, b64 = parts[0], parts[1]
    if kind not in KEY_TYPES:
        raise SignatureError(f"key type {kind!r} is not supported; use one of {', '.join(KEY_TYPES)}")
    try:
        blob = base64.b64decode(b64, validate=True)
    except ValueError as exc:
        raise SignatureError("the key's base64 does not decode") from exc
    key = PublicKey(kind, blob, parts[2].strip() if len(parts) > 2 else "")
    key._parts()  # check the blob now, not at the first signature
    return key


def public_key_of(private: Ed25519PrivateKey, comment: str = "") -> PublicKey:
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PublicKey(ED25519, _string(ED25519.encode()) + _string(raw), comment)


def signed_data(message: bytes, namespace: str = NAMESPACE, hash_alg: str = "sha512") -> bytes:
    """The blob an SSHSIG signature covers."""
    digest = _HASHES[hash_alg](message).digest()
    return MAGIC + _string(namespace.encode()) + _string(b"") + _string(hash_alg.encode()) + _string(digest)


def armor(public: PublicKey, signature_blob: bytes, namespace: str = NAMESPACE, hash_alg: str = "sha512") -> str:
    """Wrap a key's signature (wire format) as the armored text ``ssh-keygen -Y sign`` writes."""
    body = (MAGIC + struct.pack(">I", 1) + _string(public.blob) + _string(namespace.encode())
            + _string(b"") + _string(hash_alg.encode()) + _string(signature_blob))
    b64 = base64.b64encode(body).decode()
    lines = [b64[i:i + 76] for i in range(0, len(b64), 76)]
    return "\n".join([_BEGIN, *lines, _END]) + "\n"


def sign(private: Ed25519PrivateKey, message: bytes, namespace: str = NAMESPACE) -> str:
    """Sign ``message`` the way ``ssh-keygen -Y sign -n NAMESPACE`` does; returns armored text."""
    public = public_key_of(private)
    sig = private.sign(signed_data(message, namespace))
    return armor(public, _string(ED25519.encode()) + _string(sig), namespace)


@dataclass(frozen=True)
class Signature:
    """A parsed SSHSIG: the signing key, namespace, hash algorithm and the key's signature."""

    public: PublicKey
    namespace: str
    hash_alg: str
    blob: bytes


def parse(armored: str) -> Signature:
    """Read armored SSHSIG text.

    Raises:
        SignatureError: not an SSH signature, or one this module cannot read.
    """
    text = armored.strip()
    if not (text.startswith(_BEGIN) and text.endswith(_END)):
        raise SignatureError("not an SSH signature (expected '-----BEGIN SSH SIGNATURE-----')")
    try:
        body = base64.b64decode("".join(text[len(_BEGIN):-len(_END)].split()), validate=True)
    except ValueError as exc:
        raise SignatureError("the signature's base64 does not decode") from exc
    r = _Reader(body)
    if r.take(6) != MAGIC or r.uint32() != 1:
        raise SignatureError("not an SSHSIG version 1 signature")
    key_blob = r.string()
    namespace = r.string().decode(errors="replace")
    r.string()  # reserved
    hash_alg = r.string().decode(errors="replace")
    sig_blob = r.string()
    if not r.done():
        raise SignatureError("trailing bytes after the signature")
    kind = _Reader(key_blob).string().decode(errors="replace")
    if kind not in KEY_TYPES:
        raise SignatureError(f"signed with a {kind!r} key; supported: {', '.join(KEY_TYPES)}")
    public = PublicKey(kind, key_blob)
    public._parts()
    return Signature(public, namespace, hash_alg, sig_blob)


def verify(armored: str, message: bytes, allowed: list[PublicKey], namespace: str = NAMESPACE) -> PublicKey:
    """Check that ``armored`` signs ``message`` in ``namespace`` with one of the ``allowed`` keys.

    Returns the allowed key that signed.

    Raises:
        SignatureError: unreadable, another namespace, a key not allowed, or a bad signature.
    """
    sig = parse(armored)
    if sig.namespace != namespace:
        raise SignatureError(f"signed for namespace {sig.namespace!r}, not {namespace!r}")
    if sig.hash_alg not in _HASHES:
        raise SignatureError(f"hash algorithm {sig.hash_alg!r} is not supported")
    match = next((k for k in allowed if k.blob == sig.public.blob), None)
    if match is None:
        raise SignatureError(f"signed by key {sig.public.fingerprint}, which is not one of the person's keys")
    raw, application = match._parts()
    data = signed_data(message, namespace, sig.hash_alg)
    r = _Reader(sig.blob)
    kind = r.string().decode(errors="replace")
    if kind != match.type:
        raise SignatureError("signature type does not match the key")
    raw_sig = r.string()
    if kind == SK_ED25519:
        flags = r.take(1)
        counter = r.take(4)
        if not flags[0] & _USER_PRESENT:
            raise SignatureError("the hardware key did not confirm user presence")
        data = hashlib.sha256(application).digest() + flags + counter + hashlib.sha256(data).digest()
    if not r.done() or len(raw_sig) != 64:
        raise SignatureError("malformed signature")
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(raw_sig, data)
    except InvalidSignature:
        raise SignatureError("the signature does not match the document") from None
    return match
