"""What a verification trusts, and what it is checked against, from outside the site.

Two kinds of anchor (docs/audit-format.md §8 and §9):

- **Trust anchors**: the public keys a verification accepts signatures from. Given with
  ``--trust-key`` (files or folders of PEM public keys) they are the only keys trusted; an
  empty folder, a missing or unreadable file, or a file that is not a public key is an error,
  never a reason to fall back on the keys the site (or the bundle) offers. Without them the
  keys found in the site folder (or the bundle) are trusted and their fingerprints printed.
- **Consistency anchors** (``--against FILE``): copies made earlier and held elsewhere (a
  bundle, or a file of signed checkpoints such as a copy of the witness file or the chain
  head written beside a CSV export). The chain being verified must extend every position they
  hold: the event at each seq has the row hash the copy holds, and the chain reaches it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from hmi.audit.bundle import BundleContents, BundleError, read_bundle
from hmi.audit.checkpoint import Checkpoint, read_checkpoint_lines
from hmi.audit.keys import KeyFileError, PublicKey
from hmi.audit.verify import Kind, VerifyReport

KEY_SUFFIXES = (".pub", ".pem")


class AnchorError(Exception):
    """An ``--against`` file cannot be used at all (missing, unreadable, not a bundle or a
    checkpoint file): the verification cannot be done as asked."""


def fingerprint(key: PublicKey) -> str:
    """The SHA-256 of the raw 32-byte public key, hex (its first 32 characters are the key id)."""
    return hashlib.sha256(key.raw).hexdigest()


@dataclass
class Trust:
    """The keys a verification trusts and where each came from."""

    keys: dict[str, PublicKey]
    #: key id -> the file (or "the bundle") it was read from
    origin: dict[str, str]
    #: True when the keys were given from outside (``--trust-key``)
    given: bool
    #: where the keys were found, for the report ("the site folder", "the bundle")
    found_in: str = ""

    def lines(self) -> list[str]:
        """The report's first lines: which keys are trusted, with their fingerprints."""
        if self.given:
            head = "trusting only the keys given with --trust-key:"
        else:
            head = (
                f"no --trust-key given: trusting the keys found in {self.found_in}. Compare"
                " these fingerprints with the ones the site published, or pass --trust-key:"
            )
        out = [head]
        for key_id, key in sorted(self.keys.items()):
            out.append(f"  key {key_id}  SHA-256 {fingerprint(key)}  ({self.origin[key_id]})")
        if not self.keys:
            out.append("  (none)")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "given": self.given,
            "found_in": None if self.given else self.found_in,
            "keys": [
                {"key_id": k, "sha256": fingerprint(v), "from": self.origin[k]}
                for k, v in sorted(self.keys.items())
            ],
        }


def _key_files(folder: Path) -> list[Path]:
    try:
        children = sorted(p for p in folder.iterdir() if p.suffix in KEY_SUFFIXES)
    except OSError as exc:
        raise KeyFileError(f"cannot read the folder of trusted keys {folder}: {exc}") from None
    return [p for p in children if p.is_file()]


def load_trust(paths: Sequence[Path]) -> Trust:
    """The keys given with ``--trust-key``: each a PEM public key file or a folder of them.
    Refuses (KeyFileError) an empty folder, a missing or unreadable file and a file that is not
    an Ed25519 public key: an anchor that cannot be read never means "trust anything"."""
    if not paths:
        raise KeyFileError("no trusted key given")
    keys: dict[str, PublicKey] = {}
    origin: dict[str, str] = {}
    for path in paths:
        if path.is_dir():
            files = _key_files(path)
            if not files:
                raise KeyFileError(
                    f"the folder {path} holds no public key (*.pub or *.pem): a trust anchor"
                    " that holds nothing cannot be checked against"
                )
        elif path.is_file():
            files = [path]
        elif path.exists():
            raise KeyFileError(f"the trusted key {path} is not a file or a folder")
        else:
            raise KeyFileError(f"the trusted key {path} does not exist")
        for file in files:
            key = PublicKey.from_pem_file(file)
            keys[key.key_id] = key
            origin.setdefault(key.key_id, str(file))
    return Trust(keys, origin, given=True)


def site_trust(public_key: Path, trusted_folder: Path) -> Trust:
    """The keys a site folder offers: its terminal's public key file and ``keys/trusted/``."""
    keys: dict[str, PublicKey] = {}
    origin: dict[str, str] = {}
    files = [public_key, *(_key_files(trusted_folder) if trusted_folder.is_dir() else [])]
    for file in files:
        if not file.exists():
            raise KeyFileError(f"the site's public key {file} does not exist")
        key = PublicKey.from_pem_file(file)
        keys[key.key_id] = key
        origin.setdefault(key.key_id, str(file))
    return Trust(keys, origin, given=False, found_in=f"the site folder ({public_key.parent})")


def bundle_trust(keys: dict[str, PublicKey]) -> Trust:
    return Trust(
        dict(keys), dict.fromkeys(keys, "the bundle"), given=False, found_in="the bundle itself"
    )


# -- consistency anchors (--against) ------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """One position a copy held elsewhere vouches for: at ``seq`` the chain had ``row_hash``."""

    terminal: str
    seq: int
    row_hash: str
    #: where in the copy it comes from ("line 57 (event)", "checkpoint line 3 of ...")
    source: str


@dataclass
class AgainstFile:
    """A copy held elsewhere, read: the positions it vouches for, and what is wrong with it."""

    path: Path
    kind: str  # "bundle" or "checkpoints"
    anchors: list[Anchor] = field(default_factory=list)
    problems: list[tuple[Kind, str | None, int | None, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return str(self.path)


def read_against(path: Path, trusted: dict[str, PublicKey]) -> AgainstFile:
    """Read an ``--against`` file: a bundle (audit or batch record) or a file of checkpoint
    lines. Only what a trusted key signed is used: a bundle's every line through its bundle
    signature, a checkpoint through its own signature."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AnchorError(f"cannot read {path}: {exc.strerror or exc}") from None
    first_line = raw.split(b"\n", 1)[0]
    try:
        first = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        first = None
    if isinstance(first, dict) and first.get("type") == "header":
        return _bundle_anchors(path, trusted)
    if isinstance(first, dict) and first.get("type") == "checkpoint":
        return _checkpoint_anchors(path, trusted)
    raise AnchorError(
        f"{path} is neither a bundle nor a file of checkpoints (hmi audit export, hmi batch"
        " export, a copy of the witness file, or the chain head written beside a CSV export)"
    )


def _checkpoint_anchors(path: Path, trusted: dict[str, PublicKey]) -> AgainstFile:
    found = read_checkpoint_lines(path)
    out = AgainstFile(path, "checkpoints")
    for message in found.problems:
        out.problems.append((Kind.WITNESS, None, None, f"against {message}"))
    for number in found.torn_lines:
        out.notes.append(
            f"{path}:{number}: an incomplete checkpoint line (a write was cut short); it was"
            " not used"
        )
    numbers = found.line_numbers or [0] * len(found.checkpoints)
    for point, number in zip(found.checkpoints, numbers, strict=True):
        where = f"checkpoint line {number} ({point.reason}, {point.ts})"
        if _signed(point, trusted, out, f"against {path}: {where}"):
            out.anchors.append(Anchor(point.terminal, point.seq, point.row_hash, where))
    return out


def _signed(point: Checkpoint, trusted: dict[str, PublicKey], out: AgainstFile, where: str) -> bool:
    if point.key_id not in trusted:
        out.problems.append(
            (Kind.BAD_CHECKPOINT, point.terminal, point.seq,
             f"{where} is signed by key {point.key_id}, which is not a trusted key")
        )  # fmt: skip
        return False
    if not point.signature_valid(trusted[point.key_id]):
        out.problems.append(
            (Kind.BAD_CHECKPOINT, point.terminal, point.seq, f"{where} has an invalid signature")
        )
        return False
    return True


def _bundle_anchors(path: Path, trusted: dict[str, PublicKey]) -> AgainstFile:
    """A bundle held elsewhere vouches only for what it proves itself: it is verified as
    ``hmi audit verify --bundle`` would (known version, every line canonical and in order, the
    signature, the chains, checkpoints and heads, with the same trusted keys); if anything is
    wrong with it, it vouches for nothing and its problems are reported as the copy's."""
    try:
        checked, contents = read_bundle(path, trust=trusted)
    except BundleError as exc:
        raise AnchorError(str(exc)) from None
    out = AgainstFile(path, "bundle")
    if not checked.ok:
        for problem in checked.problems:
            out.problems.append(
                (problem.kind, problem.terminal, problem.seq, f"against {path}: {problem.message}")
            )
        out.problems.append(
            (Kind.BUNDLE, None, None,
             f"against {path}: the copy does not verify by itself (above), so it cannot vouch"
             " for any position")
        )  # fmt: skip
        return out
    for event in contents.events:
        out.anchors.append(
            Anchor(
                str(event["terminal_id"]), int(event["seq"]), str(event["row_hash"]),
                f"event {event['terminal_id']}:{event['seq']}",
            )
        )  # fmt: skip
    for point in contents.checkpoints:
        where = f"a checkpoint ({point.reason}, {point.ts})"
        out.anchors.append(Anchor(point.terminal, point.seq, point.row_hash, where))
    heads = contents.header.get("chain_heads")
    for item in heads if isinstance(heads, list) else []:
        point = Checkpoint.from_json(item)
        label = f"the chain head in its header, {point.reason} at {point.ts}"
        out.anchors.append(Anchor(point.terminal, point.seq, point.row_hash, label))
    return out


class ChainView(Protocol):
    """The chains an ``--against`` file is compared with (a database, or a bundle)."""

    def span(self, terminal: str) -> tuple[int, int] | None:
        """The first and last seq held of the terminal's chain, or None."""
        ...

    def reaches_head(self, terminal: str) -> bool:
        """Whether what is held runs to the head of the chain (so a later position the copy
        holds must be there)."""
        ...

    def hashes(self, terminal: str, seqs: Sequence[int]) -> dict[int, set[str]]:
        """The row hashes held at those positions."""
        ...


def check_against(
    report: VerifyReport, files: Iterable[AgainstFile], view: ChainView, terminal: str | None
) -> None:
    """Every position each copy vouches for, against the chains being verified: a rewritten
    position is ``forked``, a position the chains no longer reach ``truncated`` (each once per
    terminal and copy, at the first such position, naming the copy)."""
    for copy in files:
        for kind, term, seq, message in copy.problems:
            report.add(kind, term, seq, message)
        report.notes.extend(copy.notes)
        by_terminal: dict[str, dict[int, Anchor]] = defaultdict(dict)
        for anchor in copy.anchors:
            if terminal is None or anchor.terminal == terminal:
                by_terminal[anchor.terminal].setdefault(anchor.seq, anchor)
        checked = 0
        for name, anchors in sorted(by_terminal.items()):
            checked += _check_terminal(report, copy, name, anchors, view)
        report.notes.append(f"against {copy.label}: {checked} position(s) compared")


def _check_terminal(
    report: VerifyReport,
    copy: AgainstFile,
    name: str,
    anchors: dict[int, Anchor],
    view: ChainView,
) -> int:
    span = view.span(name)
    top = anchors[max(anchors)]
    if span is None:
        if view.reaches_head(name):
            report.add(
                Kind.TRUNCATED, name, 1,
                f"against {copy.label}: there is no chain for terminal {name} here, but the"
                f" copy holds it up to seq {top.seq} ({top.source})",
            )  # fmt: skip
        return 0
    low, high = span
    inside = sorted(seq for seq in anchors if low <= seq <= high)
    stored = view.hashes(name, inside) if inside else {}
    differ = [seq for seq in inside if anchors[seq].row_hash not in stored.get(seq, set())]
    if differ:
        first = anchors[differ[0]]
        more = f"; {len(differ) - 1} later position(s) differ too" if len(differ) > 1 else ""
        what = "is not the one" if stored.get(first.seq) else "is missing, not the one"
        report.add(
            Kind.FORKED, name, first.seq,
            f"against {copy.label}: the event at seq {first.seq} {what} the copy holds"
            f" ({first.source}): history was rewritten after the copy was made{more}",
        )  # fmt: skip
    if top.seq > high and view.reaches_head(name):
        report.add(
            Kind.TRUNCATED, name, high + 1,
            f"against {copy.label}: the chain ends at seq {high}, but the copy holds seq"
            f" {top.seq} ({top.source})",
        )  # fmt: skip
    return len(inside)


class BundleChains:
    """A bundle's events as ``--against`` compares them: only the positions it holds can be
    compared, and a later position is missing only if the bundle says it runs to the heads."""

    def __init__(self, contents: BundleContents) -> None:
        self.spans: dict[str, tuple[int, int]] = {}
        self.held: dict[tuple[str, int], set[str]] = defaultdict(set)
        for event in contents.events:
            name, seq = event.get("terminal_id"), event.get("seq")
            if type(name) is not str or type(seq) is not int:
                continue
            low, high = self.spans.get(name, (seq, seq))
            self.spans[name] = (min(low, seq), max(high, seq))
            self.held[(name, seq)].add(str(event.get("row_hash")))
        self.to_head = contents.header.get("ends_at_head") is True

    def span(self, terminal: str) -> tuple[int, int] | None:
        return self.spans.get(terminal)

    def reaches_head(self, terminal: str) -> bool:
        return self.to_head and terminal in self.spans

    def hashes(self, terminal: str, seqs: Sequence[int]) -> dict[int, set[str]]:
        return {seq: self.held[(terminal, seq)] for seq in seqs if (terminal, seq) in self.held}
