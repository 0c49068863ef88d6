"""Signed notes and cosignatures against vectors this project did not write (note_vectors.py):
golang.org/x/mod's sumdb/note keys and signed note, the C2SP specifications' examples, and
transparency-dev/formats' verifier keys; a cosignature's bytes are rebuilt by hand from the
tlog-cosignature text and checked with the cryptography package directly."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.tlog import note_vectors as nv
from vault_service.crypto.signing import SigningKey
from vault_service.tlog import merkle
from vault_service.tlog.note import (
    COSIGNATURE_V1,
    ED25519,
    MAX_SIGNATURES,
    Checkpoint,
    NoteError,
    Signature,
    add_signature_lines,
    cosign,
    cosignature_message,
    cosignature_timestamp,
    key_id,
    open_checkpoint,
    open_note,
    parse_verifier_key,
    sign_note,
    signature_line,
    verifier_key,
    verify_cosignature,
    verify_note,
)


def go_signer(skey: str) -> tuple[str, SigningKey]:
    """(name, key) of a golang.org/x/mod private key string (test helper, not a format we use)."""
    private, key, name, _key_id, b64 = skey.split("+", 4)  # the base64 may hold a '+'
    raw = base64.b64decode(b64)
    assert (private, key, raw[0], len(raw)) == ("PRIVATE", "KEY", 1, 33)
    return name, SigningKey(raw[1:])


PETER_NAME, PETER_KEY = parse_verifier_key(nv.PETER_VKEY)
ENOCH_NAME, ENOCH_KEY = parse_verifier_key(nv.ENOCH_VKEY)


# --- verifier keys and key IDs ----------------------------------------------------------------


def test_go_verifier_keys_parse_and_their_key_ids_match() -> None:
    assert PETER_NAME == "PeterNeumann"
    assert key_id(PETER_NAME, PETER_KEY).hex() == "c74f20a3"
    assert key_id(ENOCH_NAME, ENOCH_KEY).hex() == "af0cfe78"
    assert verifier_key(PETER_NAME, PETER_KEY) == nv.PETER_VKEY
    assert verifier_key(ENOCH_NAME, ENOCH_KEY) == nv.ENOCH_VKEY
    # the private key of the vector is the one of the public key
    name, signer = go_signer(nv.PETER_SKEY)
    assert (name, signer.public_key()) == (PETER_NAME, PETER_KEY)


def test_key_id_is_the_spec_formula() -> None:
    by_hand = hashlib.sha256(b"PeterNeumann\n\x01" + PETER_KEY).digest()[:4]
    assert key_id("PeterNeumann", PETER_KEY, ED25519) == by_hand
    cosigner = hashlib.sha256(b"PeterNeumann\n\x04" + PETER_KEY).digest()[:4]
    assert key_id("PeterNeumann", PETER_KEY, COSIGNATURE_V1) == cosigner


def test_every_mangling_of_a_verifier_key_is_refused() -> None:
    """As golang.org/x/mod's TestNewVerifier: every proper substring, every byte changed by one."""
    vkey = nv.PETER_VKEY
    for i in range(len(vkey) + 1):
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)):
                with pytest.raises(ValueError):
                    parse_verifier_key(vkey[i:j])
    for i in range(len(vkey)):
        mangled = vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :]
        with pytest.raises(ValueError):
            parse_verifier_key(mangled)
    for bad in [*nv.BAD_VKEYS, *nv.FORMATS_BAD_VKEYS]:
        with pytest.raises(ValueError):
            parse_verifier_key(bad)


def test_transparency_dev_verifier_keys() -> None:
    # a base64 part holding '+': only the first two pluses separate the parts
    name, key = parse_verifier_key(nv.FORMATS_ED25519_VKEY)
    assert name == "TEST"
    assert verifier_key(name, key) == nv.FORMATS_ED25519_VKEY
    # a witness key is of type 0x04 and is refused as a note key, and the other way round
    name, key = parse_verifier_key(nv.FORMATS_COSIGNER_VKEY, COSIGNATURE_V1)
    assert (name, key_id(name, key, COSIGNATURE_V1).hex()) == ("remora.n621.de", "da77ade7")
    assert verifier_key(name, key, COSIGNATURE_V1) == nv.FORMATS_COSIGNER_VKEY
    with pytest.raises(ValueError):
        parse_verifier_key(nv.FORMATS_COSIGNER_VKEY)
    with pytest.raises(ValueError):
        parse_verifier_key(nv.PETER_VKEY, COSIGNATURE_V1)


def test_verifier_key_spelling_is_strict() -> None:
    upper = nv.PETER_VKEY.replace("c74f20a3", "C74F20A3")
    with pytest.raises(ValueError, match="8 hex"):
        parse_verifier_key(upper)  # the spec's hex is lowercase
    with pytest.raises(ValueError):
        verifier_key("a+b", PETER_KEY)
    with pytest.raises(ValueError):
        verifier_key("a b", PETER_KEY)
    with pytest.raises(ValueError):
        verifier_key("ab", PETER_KEY[:31])


# --- signing and verifying notes --------------------------------------------------------------


def test_signing_the_go_text_with_the_go_key_gives_the_go_note() -> None:
    name, signer = go_signer(nv.PETER_SKEY)
    assert sign_note(nv.TEXT, name, signer) == nv.PETER_SIGNED
    assert signature_line(nv.TEXT, name, signer) == nv.PETER_SIG


def test_the_go_note_verifies() -> None:
    assert verify_note(nv.PETER_SIGNED, PETER_NAME, PETER_KEY) == nv.TEXT
    both = nv.TEXT + "\n" + nv.PETER_SIG + nv.ENOCH_SIG
    assert verify_note(both, PETER_NAME, PETER_KEY) == nv.TEXT  # Enoch's line is ignored
    assert verify_note(both, ENOCH_NAME, ENOCH_KEY) == nv.TEXT
    parsed = open_note(both)
    assert parsed.text == nv.TEXT
    assert [(s.name, s.key_id.hex()) for s in parsed.signatures] == [
        ("PeterNeumann", "c74f20a3"),
        ("EnochRoot", "af0cfe78"),
    ]


def test_the_signed_note_spec_example_verifies() -> None:
    name, key = parse_verifier_key(nv.SPEC_VKEY)
    assert verify_note(nv.SPEC_NOTE, name, key) == "This is an example message.\n"


def test_the_quasimodo_example_parses_with_its_blank_lines_in_the_text() -> None:
    parsed = open_note(nv.QUASIMODO_NOTE)
    assert parsed.text.endswith("ed \u00e8 subito sera.\n")
    assert parsed.text.count("\n\n") == 1
    (sig,) = parsed.signatures
    assert (sig.name, len(sig.signature)) == ("quasimodo.example/salvatore", 64)


def test_a_note_without_a_signature_by_the_key_is_refused() -> None:
    only_enoch = nv.TEXT + "\n" + nv.ENOCH_SIG
    with pytest.raises(NoteError, match="no signature"):
        verify_note(only_enoch, PETER_NAME, PETER_KEY)
    # a known name with another key ID, or another name with the key ID, is not the key
    misnamed = nv.PETER_SIGNED.replace("PeterNeumann", "CarmenSandiego")
    with pytest.raises(NoteError, match="no signature"):
        verify_note(misnamed, PETER_NAME, PETER_KEY)
    with pytest.raises(NoteError, match="no signature"):
        verify_note(nv.PETER_SIGNED, PETER_NAME, ENOCH_KEY)


def test_a_bad_signature_by_the_key_is_refused_even_beside_a_good_one() -> None:
    sig = nv.PETER_SIG
    longer = sig[:60] + "ABCD" + sig[60:]  # golang.org/x/mod's invalid-signature case
    with pytest.raises(NoteError, match="invalid signature"):
        verify_note(nv.TEXT + "\n" + longer, PETER_NAME, PETER_KEY)
    with pytest.raises(NoteError, match="invalid signature"):
        verify_note(nv.TEXT + "\n" + sig + longer, PETER_NAME, PETER_KEY)
    with pytest.raises(NoteError, match="invalid signature"):
        verify_note(nv.TEXT.replace("think", "thunk") + "\n" + sig, PETER_NAME, PETER_KEY)


@pytest.mark.parametrize(
    "note",
    [
        # golang.org/x/mod's bad messages
        nv.TEXT,
        nv.TEXT + "\n",
        nv.TEXT + "\n" + nv.PETER_SIG[:-1],
        "\x01" + nv.TEXT + "\n" + nv.PETER_SIG,
        nv.TEXT + "\n" + "\u2014 Bad Name " + nv.PETER_SIG.split(" ")[-1],
        nv.TEXT + "\n" + nv.PETER_SIG + "Unexpected line.\n",
        nv.TEXT + "\n" + nv.PETER_SIG * (MAX_SIGNATURES + 1),
        # and more
        "\n" + nv.PETER_SIG,
        nv.TEXT + "\n" + "\u2014 PeterNeumann\n",
        nv.TEXT + "\n" + "\u2014 PeterNeumann x08g\n",  # a key ID and nothing after it
        nv.TEXT + "\n" + "- PeterNeumann " + nv.PETER_SIG.split(" ")[-1],
        nv.TEXT + "\n" + nv.PETER_SIG.replace("AM=", "AN="),  # non-canonical base64
        nv.TEXT + "\n" + nv.PETER_SIG.replace("=", ""),  # unpadded base64
        nv.TEXT + "\r\n" + nv.PETER_SIG,
        nv.TEXT + "\n" + nv.PETER_SIG.replace("PeterNeumann", "Peter+Neumann"),
        nv.TEXT + "\n" + nv.PETER_SIG.replace("PeterNeumann", "Peter\u00a0Neumann"),
        "\ud800" + nv.PETER_SIGNED,
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(ValueError):
        open_note(note)
    with pytest.raises(NoteError):
        verify_note(note, PETER_NAME, PETER_KEY)


def test_up_to_the_limit_of_signatures_is_accepted() -> None:
    note = nv.TEXT + "\n" + nv.PETER_SIG * MAX_SIGNATURES
    assert len(open_note(note).signatures) == MAX_SIGNATURES
    assert verify_note(note, PETER_NAME, PETER_KEY) == nv.TEXT


def test_a_note_we_sign_verifies_by_the_spec_rules() -> None:
    """Our signature line checked by hand: the spec's key ID and Ed25519 over the text alone."""
    signer = SigningKey(b"\x07" * 32)
    text = "vault.example/ledger\n3\n" + base64.b64encode(b"\x01" * 32).decode() + "\n"
    note = sign_note(text, "vault.example/ledger", signer)
    assert note.startswith(text + "\n\u2014 vault.example/ledger ")
    raw = base64.b64decode(note.rsplit(" ", 1)[1])
    pk = signer.public_key()
    assert raw[:4] == hashlib.sha256(b"vault.example/ledger\n\x01" + pk).digest()[:4]
    Ed25519PublicKey.from_public_bytes(pk).verify(raw[4:], text.encode())
    assert verify_note(note, "vault.example/ledger", pk) == text
    with pytest.raises(ValueError):
        sign_note("no final newline", "n", signer)
    with pytest.raises(ValueError):
        sign_note("tab\there\n", "n", signer)


def test_a_second_signature_is_added_as_a_line() -> None:
    name, _ = go_signer(nv.PETER_SKEY)
    other = SigningKey(b"\x09" * 32)
    note = add_signature_lines(nv.PETER_SIGNED, [signature_line(nv.TEXT, "other", other)])
    assert verify_note(note, name, PETER_KEY) == nv.TEXT
    assert verify_note(note, "other", other.public_key()) == nv.TEXT
    assert add_signature_lines(note, [nv.PETER_SIG, nv.PETER_SIG.rstrip("\n")]) == note
    for bad in ["not a line", nv.PETER_SIG + nv.ENOCH_SIG, "\u2014 a b\n"]:
        with pytest.raises(ValueError):
            add_signature_lines(note, [bad])
    with pytest.raises(ValueError):
        add_signature_lines(nv.TEXT, [nv.PETER_SIG])  # not a signed note


# --- checkpoints ------------------------------------------------------------------------------


def test_the_spec_checkpoint_parses_and_prints_back() -> None:
    cp = Checkpoint.parse(nv.SOFA_BODY)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert base64.b64encode(cp.root).decode() == "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    assert cp.body() == nv.SOFA_BODY
    parsed = open_note(nv.SOFA_NOTE)
    assert parsed.text == nv.SOFA_BODY
    assert [s.name for s in parsed.signatures] == [
        "example.com/behind-the-sofa",
        "witness.example.com/w1",
    ]


def test_extension_lines_round_trip() -> None:
    cp = Checkpoint("o", 5, b"\x02" * 32, ("ext one", "ext+two"))
    assert Checkpoint.parse(cp.body()) == cp
    assert cp.body().endswith("\next one\next+two\n")


ROOT_B64 = base64.b64encode(b"\x02" * 32).decode()


@pytest.mark.parametrize(
    "body",
    [
        "",
        f"o\n5\n{ROOT_B64}",  # no final newline
        "o\n5\n",  # two lines
        f"\n5\n{ROOT_B64}\n",  # empty origin
        f"o\n05\n{ROOT_B64}\n",  # a leading zero
        f"o\n+5\n{ROOT_B64}\n",
        f"o\n-5\n{ROOT_B64}\n",
        f"o\n 5\n{ROOT_B64}\n",
        f"o\n5 \n{ROOT_B64}\n",
        f"o\n0x5\n{ROOT_B64}\n",
        f"o\n\u0665\n{ROOT_B64}\n",  # an Arabic-Indic digit five: a digit, not ASCII decimal
        f"o\n1_000\n{ROOT_B64}\n",
        f"o\n18446744073709551616\n{ROOT_B64}\n",  # 2^64
        f"o\n{'9' * 5000}\n{ROOT_B64}\n",
        f"o\n\n{ROOT_B64}\n",
        "o\n5\n" + base64.b64encode(b"\x02" * 31).decode() + "\n",  # 31-byte root
        "o\n5\n" + base64.b64encode(b"\x02" * 33).decode() + "\n",
        "o\n5\n" + ROOT_B64.rstrip("=") + "\n",  # unpadded
        "o\n5\n" + ROOT_B64[:-2] + "J=\n",  # non-canonical padding bits
        "o\n5\n" + ROOT_B64.replace("A", "-") + "\n",  # URL-safe alphabet
        f"o\n5\n{ROOT_B64}\n\n",  # an empty extension line
        f"o\n5\n{ROOT_B64}\next\n\n",
        f"o\r\n5\n{ROOT_B64}\n",  # control characters
        f"o\t1\n5\n{ROOT_B64}\n",
        f"o\n0\n{ROOT_B64}\n",  # size 0 with another root than the empty tree's
    ],
)
def test_malformed_checkpoints_are_refused(body: str) -> None:
    with pytest.raises(ValueError):
        Checkpoint.parse(body)


def test_valid_edge_checkpoints() -> None:
    empty = "o\n0\n" + base64.b64encode(merkle.EMPTY_ROOT).decode() + "\n"
    assert Checkpoint.parse(empty).size == 0
    assert Checkpoint.parse(f"o\n18446744073709551615\n{ROOT_B64}\n").size == 2**64 - 1
    # the origin SHOULD have no spaces or plus, but clients MUST NOT assume that
    assert Checkpoint.parse(f"my log + more\n7\n{ROOT_B64}\n").origin == "my log + more"


@pytest.mark.parametrize(
    "args",
    [
        ("", 1, b"\x02" * 32),
        ("a\nb", 1, b"\x02" * 32),
        ("o", -1, b"\x02" * 32),
        ("o", 2**64, b"\x02" * 32),
        ("o", 1, b"\x02" * 31),
        ("o", 0, b"\x02" * 32),
        ("o", 1, b"\x02" * 32, ("",)),
        ("o", 1, b"\x02" * 32, ("a\nb",)),
    ],
)
def test_an_invalid_checkpoint_cannot_be_built(args: tuple[object, ...]) -> None:
    with pytest.raises(ValueError):
        Checkpoint(*args)  # type: ignore[arg-type]


def test_open_checkpoint_verifies_the_log_signature_and_the_origin() -> None:
    log = SigningKey(b"\x05" * 32)
    cp = Checkpoint("vault.example/audit", 3, b"\x02" * 32)
    note = sign_note(cp.body(), cp.origin, log)
    assert open_checkpoint(note, cp.origin, log.public_key()) == cp
    with pytest.raises(NoteError):
        open_checkpoint(sign_note(cp.body(), "other", log), "other", log.public_key())
    with pytest.raises(NoteError):
        open_checkpoint(sign_note("not\na checkpoint\n", "o", log), "o", log.public_key())


# --- cosignatures -----------------------------------------------------------------------------


def test_the_cosigned_message_is_the_spec_example() -> None:
    assert cosignature_message(nv.SOFA_BODY, nv.SOFA_TIMESTAMP) == nv.SOFA_COSIGNED_MESSAGE.encode()
    # and the same bytes built by hand from the spec's words
    by_hand = b"cosignature/v1" + b"\n" + b"time" + b" " + b"1679315147" + b"\n" + nv.SOFA_BODY.encode()
    assert cosignature_message(nv.SOFA_BODY, 1679315147) == by_hand


def test_the_spec_example_cosignature_line_has_the_spec_framing() -> None:
    """No key is published for it: its key ID, timestamp and length are what can be checked."""
    sig = open_note(nv.SOFA_NOTE).signatures[1]
    assert (sig.name, sig.key_id.hex(), len(sig.signature)) == ("witness.example.com/w1", "8d66cf3f", 72)
    assert cosignature_timestamp(sig) == nv.SOFA_TIMESTAMP
    assert sig.line() == nv.SOFA_WITNESS_SIG


def test_transparency_dev_cosignature_timestamp() -> None:
    raw = base64.b64decode(nv.FORMATS_COSIGNATURE)
    assert cosignature_timestamp(Signature("w", raw[:4], raw[4:])) == nv.FORMATS_COSIGNATURE_TIME
    raw = base64.b64decode(nv.FORMATS_NOT_A_COSIGNATURE)
    with pytest.raises(ValueError):
        cosignature_timestamp(Signature("w", raw[:4], raw[4:]))


def test_a_cosignature_we_make_is_the_spec_bytes() -> None:
    witness = SigningKey(b"\x03" * 32)
    pk = witness.public_key()
    line = cosign(nv.SOFA_BODY, "witness.example.com/w1", witness, nv.SOFA_TIMESTAMP)
    prefix = "\u2014 witness.example.com/w1 "
    assert line.startswith(prefix)
    assert line.endswith("\n")
    raw = base64.b64decode(line[len(prefix) : -1], validate=True)
    assert len(raw) == 4 + 8 + 64
    assert raw[:4] == hashlib.sha256(b"witness.example.com/w1\n\x04" + pk).digest()[:4]
    assert raw[4:12] == (1679315147).to_bytes(8, "big")
    Ed25519PublicKey.from_public_bytes(pk).verify(raw[12:], nv.SOFA_COSIGNED_MESSAGE.encode())
    with pytest.raises(InvalidSignature):  # the timestamp is signed
        Ed25519PublicKey.from_public_bytes(pk).verify(raw[12:], nv.SOFA_BODY.encode())


def test_cosignatures_verify_beside_the_log_signature() -> None:
    log, w1, w2 = SigningKey(b"\x05" * 32), SigningKey(b"\x06" * 32), SigningKey(b"\x08" * 32)
    cp = Checkpoint("vault.example/audit", 8, b"\x04" * 32)
    note = sign_note(cp.body(), cp.origin, log)
    note = add_signature_lines(
        note,
        [
            cosign(cp.body(), "w1.example", w1, 1_700_000_000),
            cosign(cp.body(), "w2.example", w2, 1_700_000_005),
            cosign(cp.body(), "w1.example", w1, 1_700_000_100),
        ],
    )
    assert verify_note(note, cp.origin, log.public_key()) == cp.body()
    assert verify_cosignature(note, "w1.example", w1.public_key()) == 1_700_000_100  # the latest
    assert verify_cosignature(note, "w2.example", w2.public_key()) == 1_700_000_005
    # a witness key is not a note key (its key ID is of type 0x04), nor the other way round
    with pytest.raises(NoteError, match="no signature"):
        verify_note(note, "w1.example", w1.public_key())
    with pytest.raises(NoteError, match="no cosignature"):
        verify_cosignature(note, cp.origin, log.public_key())
    with pytest.raises(NoteError):
        verify_cosignature(note, "w2.example", w1.public_key())


def test_a_bad_cosignature_is_refused() -> None:
    w = SigningKey(b"\x06" * 32)
    cp = Checkpoint("o", 8, b"\x04" * 32)
    note = sign_note(cp.body(), "o", SigningKey(b"\x05" * 32))
    line = cosign(cp.body(), "w", w, 100)
    raw = bytearray(base64.b64decode(line.split(" ")[-1]))
    raw[11] ^= 1  # another timestamp than the one signed
    forged = f"\u2014 w {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(NoteError, match="invalid cosignature"):
        verify_cosignature(note + forged, "w", w.public_key())
    with pytest.raises(NoteError, match="invalid cosignature"):
        verify_cosignature(note + line + forged, "w", w.public_key())
    other = Checkpoint("o", 9, b"\x04" * 32)
    with pytest.raises(NoteError, match="invalid cosignature"):
        verify_cosignature(
            sign_note(other.body(), "o", SigningKey(b"\x05" * 32)) + line, "w", w.public_key()
        )
    short = f"\u2014 w {base64.b64encode(bytes(raw[:-1])).decode()}\n"
    with pytest.raises(NoteError, match="malformed cosignature"):
        verify_cosignature(note + short, "w", w.public_key())
    big = bytes(raw[:4]) + (2**63).to_bytes(8, "big") + bytes(raw[12:])
    with pytest.raises(NoteError, match="malformed cosignature"):
        verify_cosignature(note + f"\u2014 w {base64.b64encode(big).decode()}\n", "w", w.public_key())
    text_note = sign_note("not a checkpoint\n", "o", SigningKey(b"\x05" * 32))
    with pytest.raises(NoteError, match="checkpoint"):
        verify_cosignature(text_note, "w", w.public_key())


@pytest.mark.parametrize("timestamp", [-1, 2**63, True])
def test_cosign_refuses_a_timestamp_out_of_range(timestamp: int) -> None:
    with pytest.raises(ValueError):
        cosign(nv.SOFA_BODY, "w", SigningKey(b"\x06" * 32), timestamp)


def test_cosign_refuses_what_is_not_a_checkpoint_text() -> None:
    with pytest.raises(ValueError):
        cosign("hello\n", "w", SigningKey(b"\x06" * 32), 1)
    with pytest.raises(ValueError):
        cosign(nv.SOFA_NOTE, "w", SigningKey(b"\x06" * 32), 1)  # the signed note, not its text
