"""Edit people.yaml in place (``treasury people add-key``), keeping its comments and layout."""

from __future__ import annotations

from pathlib import Path

from treasury.errors import ConfigError
from treasury.located import compose
from treasury.people.registry import load_people
from treasury.people.sshsig import SignatureError, parse_public_key


def add_key(path: Path, person: str, key_line: str) -> str:
    """Append ``key_line`` to ``person``'s ``ssh_keys`` in ``path``; returns the key's fingerprint.

    The file is re-validated after the edit and left unchanged when the result would not load.

    Raises:
        ConfigError: an unknown person, a bad key, a key registered already, or a layout this
            edit does not handle (then add the line by hand).
    """
    try:
        key = parse_public_key(key_line)
    except SignatureError as exc:
        raise ConfigError(str(exc), field="PUBKEY_FILE") from None
    people = load_people(path)
    if person not in people.persons:
        raise ConfigError(f"no person {person!r}; people: {', '.join(sorted(people.persons))}",
                          source=str(path), field="people")
    owner = people.owner_of(key)
    if owner is not None:
        raise ConfigError(f"key {key.fingerprint} is already registered to {owner!r}", source=str(path))
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    doc = compose(text.encode(), str(path))
    entry = doc.data["people"][person]
    item = f"- {key.openssh()}"
    if isinstance(entry, dict) and entry.get("ssh_keys"):
        # a block list: add an item after the last one, at its column
        last = len(entry["ssh_keys"]) - 1
        line, col = doc.where(("people", person, "ssh_keys", last))
        prefix = lines[line - 1][:col - 1]
        if prefix.strip() not in ("", "-") or "[" in lines[line - 1]:
            raise ConfigError(f"add `{key.openssh()}` to {person}'s ssh_keys by hand (flow-style list)",
                              source=str(path))
        indent = " " * (col - 3 if prefix.rstrip().endswith("-") else col - 1)
        lines.insert(line, f"{indent}{item}\n")
    elif isinstance(entry, dict) and "ssh_keys" in entry:
        # an empty list (``ssh_keys: []``): replace it with a block list
        kline, kcol = doc.where(("people", person, "ssh_keys"), key=True)
        original = lines[kline - 1]
        head, sep, rest = original.partition("ssh_keys:")
        if not sep or rest.split("#")[0].strip() not in ("[]", ""):
            raise ConfigError(f"add `{key.openssh()}` to {person}'s ssh_keys by hand", source=str(path))
        lines[kline - 1] = f"{head}ssh_keys:\n{' ' * (kcol + 1)}{item}\n"
    elif isinstance(entry, dict):
        kline, kcol = doc.where(("people", person, next(iter(entry))), key=True)
        lines.insert(kline - 1, f"{' ' * (kcol - 1)}ssh_keys:\n{' ' * (kcol + 1)}{item}\n")
    else:
        raise ConfigError(f"add `{key.openssh()}` to {person}'s ssh_keys by hand", source=str(path))
    new_text = "".join(lines)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new_text)
    try:
        check = load_people(tmp)
    except ConfigError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"adding the key would break the file ({exc}); add it by hand", source=str(path)) from None
    if not any(k.blob == key.blob for k in check.persons[person].keys):
        tmp.unlink(missing_ok=True)
        raise ConfigError("the edit did not register the key; add it by hand", source=str(path))
    tmp.replace(path)
    return key.fingerprint
