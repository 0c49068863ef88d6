"""``scrub_text`` purposes (issue 20, part 4): the matched clinic sees what the member wrote,
never how to reach the member. Through a real server: a share of the concern text masks the
e-mail, phone and resident registration numbers typed into it, releases the photo as is (it is
not a de-identified view: no pseudonym, content allowed), and the audit says it was scrubbed."""

from __future__ import annotations

import pytest

from tests.regressions import conftest as harness
from tests.regressions.conftest import Vault
from vault_service.errors import ConfigError
from vault_service.policy import load_policy

vault = harness.vault
clock = harness.clock
policy_text = harness.policy_text

TEXT = "rhinoplasty; call 010-2345-6789 or mail kim@example.com (RRN 900101-1234567)"
PHOTO = bytes(range(256)) * 8


def test_a_clinic_share_masks_contact_details_and_keeps_the_rest(vault: Vault) -> None:
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", {"text": TEXT, "budget": "3000000"}).record_id
    photo = app.put_record("member-1", "concern_photo", {"caption": "side"}, content=PHOTO).record_id
    app.grant_consent(
        "member-1",
        "clinic_proposal",
        {"concern_text": None, "concern_photo": None},
        evidence_reference="match-1",
        grantee_principal="clinic",
    )
    share = app.create_share(
        "member-1",
        "clinic",
        "clinic_proposal",
        [rid, photo],
        ["text", "budget", "content"],
        expires_at=vault.clock.now() + 86400,
    )
    items = list(vault.client("clinic").read_share(share.share_id))
    records = [i for i in items if not isinstance(i, tuple)]
    text = next(r for r in records if r.info.category == "concern_text")
    assert text.fields == {
        "text": "rhinoplasty; call [PHONE] or mail [EMAIL] (RRN [RRN])",
        "budget": "3000000",
    }
    assert text.info.subject_pseudonym == ""  # not a de-identified view
    content = b"".join(piece[2] for piece in items if isinstance(piece, tuple))
    assert content == PHOTO  # images are released as they are
    # the application's own purpose still sees the text as written
    assert app.get_record(rid, "matching").fields["text"] == TEXT
    entries, _ = vault.client("auditor").query_audit(action="share.read")
    reasons = sorted(e["reason"] for e in entries)
    assert reasons == [
        f"share {share.share_id}: budget,text (scrubbed)",
        f"share {share.share_id}: content (scrubbed)",
    ]


def test_scrub_text_must_be_a_boolean() -> None:
    text = 'version = 1\n[categories.n]\nfields = ["t"]\n[purposes.p]\ncategories = ["n"]\n'
    text += 'scrub_text = "yes"\n'
    with pytest.raises(ConfigError, match=r"p.toml: purposes.p.scrub_text: must be true or false"):
        load_policy(text, "p.toml")
