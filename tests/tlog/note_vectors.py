"""Known-answer vectors for signed notes, checkpoints and cosignatures, transcribed as data from
sources this project did not write. No code is copied.

- golang.org/x/mod, sumdb/note/note_test.go at GO_MOD_COMMIT (github.com/golang/mod, BSD-3):
  the PeterNeumann and EnochRoot keys, the note text, its signed form, the signature lines, and
  the mangled verifier keys it must refuse.
- C2SP, signed-note.md, tlog-checkpoint.md and tlog-cosignature.md at C2SP_COMMIT
  (github.com/C2SP/C2SP, CC-BY-4.0): the examples in the specifications.
- transparency-dev/formats, note/note_cosigv1_test.go and note/note_verifier_test.go at
  FORMATS_COMMIT (Apache-2.0): verifier keys of type 0x01 and 0x04, and a cosignature whose
  timestamp is known.
"""

from __future__ import annotations

GO_MOD_COMMIT = "fe2ec04f7c3c3aa6fad97631aafcff6e49e2d1db"
C2SP_COMMIT = "5ba5ee830903e91240fc6f9f3a7a9293d49e69c9"
FORMATS_COMMIT = "0b850f1a7b4a5b70deeacac6535e4b8023809d21"

# --- golang.org/x/mod sumdb/note -------------------------------------------------------------

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
#: Go's private key format, PRIVATE+KEY+<name>+<key ID>+base64(0x01 || 32-byte Ed25519 seed)
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
#: what TestSign expects Sign to produce from TEXT with PETER_SKEY (Ed25519 is deterministic)
PETER_SIGNED = TEXT + "\n" + PETER_SIG
#: TestNewVerifier's two hand-made bad keys: a wrong-length key with a matching key ID, and an
#: unknown algorithm (0x65) with a matching key ID
BAD_VKEYS = [
    "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
]

# --- C2SP -------------------------------------------------------------------------------------

#: signed-note.md, "Example": this vkey verifies this note
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n"
    "\n"
    "\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
#: signed-note.md, the opening example (no key is published for it: parse only)
QUASIMODO_NOTE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed \u00e8 subito sera.\n"
    "\n"
    "\u2014 quasimodo.example/salvatore "
    "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)
#: tlog-checkpoint.md and tlog-cosignature.md: the example checkpoint, its log signature and a
#: witness cosignature (no keys are published for them: parse only)
SOFA_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SOFA_LOG_SIG = (
    "\u2014 example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)
SOFA_WITNESS_SIG = (
    "\u2014 witness.example.com/w1 "
    "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
SOFA_NOTE = SOFA_BODY + "\n" + SOFA_LOG_SIG + SOFA_WITNESS_SIG
#: tlog-cosignature.md, "Ed25519 signed message": the message for timestamp 1679315147
SOFA_TIMESTAMP = 1679315147
SOFA_COSIGNED_MESSAGE = (
    "cosignature/v1\n"
    "time 1679315147\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)

# --- transparency-dev/formats -----------------------------------------------------------------

#: TestCoSigV1NewVerifier: a type 0x01 key whose base64 holds a '+', a type 0x04 witness key
FORMATS_ED25519_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
FORMATS_COSIGNER_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
_SIGSTORE_KEY = (
    "AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBcK5AW5i0hrZLOC96l"
    "+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc="
)
#: its keys that must be refused
FORMATS_BAD_VKEYS = [
    "bananas.sigstore.dev+12344556",
    "rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!",
    "rekor.sigstore.dev+12345678+AwEB",
    "rekor.sigstore.dev+NOT_A_NUMBER+" + _SIGSTORE_KEY,
    "rekor.sigstore.dev+00000000+" + _SIGSTORE_KEY,
]
#: TestCoSigV1Timestamp: base64 of key ID || timestamp || signature, and its timestamp
FORMATS_COSIGNATURE = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORm"
    "nFBOBA=="
)
FORMATS_COSIGNATURE_TIME = 1727964367
#: ...and a plain Ed25519 note signature, which is not a cosignature
FORMATS_NOT_A_COSIGNATURE = (
    "eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY="
)
