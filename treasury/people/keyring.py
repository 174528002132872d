"""Demo identities: keys that ``treasury demo`` (and the test harness) make for demo people.

They live in ``<config>/demo-keys/NAME`` (mode 0600, with ``NAME.pub``), and only the
simulator environment signs with them on a person's behalf (``--as NAME`` without an
identity). They are demo identities: every other environment needs the person's own key
(``TREASURY_IDENTITY``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from treasury.people.edit import add_key
from treasury.people.identity import KeyFileSigner, Signer, load_key_file, write_key_file
from treasury.people.registry import load_people

DEMO_KEYS = "demo-keys"


@dataclass
class Keyring:
    """Person → the demo key that signs for them."""

    signers: dict[str, Signer] = field(default_factory=dict)
    folder: Path | None = None

    def get(self, person: str) -> Signer | None:
        return self.signers.get(person)


def load_keyring(config_dir: Path) -> Keyring:
    """The demo keys in ``config_dir/demo-keys`` (an empty keyring when there are none)."""
    folder = config_dir / DEMO_KEYS
    ring = Keyring(folder=folder)
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix != ".pub" and not path.name.startswith("."):
                ring.signers[path.name] = load_key_file(path)
    return ring


def make_demo_identities(config_dir: Path) -> list[str]:
    """Give every person in ``people.yaml`` who has no key a fresh demo Ed25519 key.

    Writes ``demo-keys/NAME`` (0600) and ``NAME.pub`` and registers the public key in
    people.yaml. Returns the people who got one.
    """
    path = config_dir / "people.yaml"
    people = load_people(path)
    folder = config_dir / DEMO_KEYS
    folder.mkdir(mode=0o700, exist_ok=True)
    made = []
    for pid, person in sorted(people.persons.items()):
        if person.keys:
            continue
        key_path = folder / pid
        signer: KeyFileSigner | None = load_key_file(key_path) if key_path.exists() else None
        public = signer.public if signer else write_key_file(key_path, Ed25519PrivateKey.generate(),
                                                             f"{pid}@treasury-demo")
        add_key(path, pid, public.openssh() if public.comment else f"{public.openssh()} {pid}@treasury-demo")
        made.append(pid)
    return made
