"""Identity: normalized emails and phones, and matching records to contacts."""
import unicodedata

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given
from hypothesis import strategies as st

from syncapp.engine import identity
from syncapp.engine.identity import (
    IdentityIndex,
    IncomingKeys,
    InvalidEmail,
    InvalidPhone,
    KnownContact,
    MatchKind,
    likely_duplicate_pairs,
    match,
    match_page,
    normalize_email,
    normalize_phone,
)


class TestNormalizeEmail:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("ann@example.com", "ann@example.com"),
            ("  Mixed.Case@Example.COM ", "mixed.case@example.com"),
            ("ann+news@example.com", "ann+news@example.com"),
            ("o'brien@example.ie", "o'brien@example.ie"),
            ("user@bücher.example", "user@bücher.example"),
            ("JOSÉ@example.com", "josé@example.com"),
            ("用户@例子.广告", "用户@例子.广告"),
            ("a@b.co", "a@b.co"),
            ("first.last@sub.domain.example.org", "first.last@sub.domain.example.org"),
            ("typo@gmial.com", "typo@gmial.com"),
        ],
    )
    def test_valid_addresses_are_trimmed_and_lowercased(self, raw, expected):
        assert normalize_email(raw) == expected

    def test_decomposed_accents_are_composed(self):
        assert normalize_email("jose\u0301@example.com") == "jos\u00e9@example.com"

    # The reasons are email-validator's (see normalize_email), but for the @ count and
    # the local part's length, which Syncapp says itself.
    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            ("a..b@example.com", "cannot have two periods in a row"),
            ("ann@example..com", "cannot have two periods in a row"),
            ("nodomain@", "there must be something after the @-sign"),
            ("a@b@example.com", "more than one @"),
            ("no-at-sign.example.com", "must have an @-sign"),
            ("@example.com", "there must be something before the @-sign"),
            ("ann smith@example.com", "invalid characters before the @-sign: SPACE"),
            ("ann@exa mple.com", "invalid characters: SPACE"),
            ("", "empty"),
            ("   ", "empty"),
            (".ann@example.com", "cannot start with a period"),
            ("ann.@example.com", "cannot have a period immediately before the @-sign"),
            ("ann@.example.com", "cannot have a period immediately after the @-sign"),
            ("ann@example.com.", "cannot end with a period"),
            ("ann@localhost", "should have a period"),
            ("ann@-example.com", "hyphen"),
            ("ann@exa_mple.com", "'_'"),
            ("ann(comment)@example.com", "'('"),
            ('"quoted"@example.com', "quoting the part before the @-sign is not allowed"),
            ("ann@[192.0.2.1]", "bracketed IP address"),
            ("ann@example.123", "not within a valid top-level domain"),
            ("a\u200bnn@example.com", "unsafe characters: ZERO WIDTH SPACE"),
            ("ann\x00@example.com", "invalid characters before the @-sign: U\\+0000"),
            ("a" * 65 + "@example.com", "longer than 64"),
            ("ann@" + "a" * 64 + ".com", "so many characters"),
            ("ann@" + ("a" * 60 + ".") * 5 + "com", "too long"),
            # Stricter than the hand-written checks were: nothing is delivered there.
            ("ann@printer.local", "special-use or reserved name"),
            ("ann@example.test", "special-use or reserved name"),
            ("ann@site.invalid", "special-use or reserved name"),
            ("Ann <ann@example.com>", "display name"),
            ("ann@😀.com", "not allowed"),
        ],
    )
    def test_invalid_addresses_say_why(self, raw, reason):
        with pytest.raises(InvalidEmail, match=reason.replace("(", r"\(")) as caught:
            normalize_email(raw)
        assert not str(caught.value).endswith(".")

    @pytest.mark.parametrize("raw", [None, 42, ["a@b.co"]])
    def test_non_text_is_refused(self, raw):
        with pytest.raises(InvalidEmail):
            normalize_email(raw)

    def test_hostile_data_set(self, hostile_contacts):
        invalid = {row["email"] for row in hostile_contacts if row["why"].startswith("invalid")}
        assert invalid == {"a..b@example.com", "nodomain@", "a@b@example.com"}
        for row in hostile_contacts:
            if row["email"] in invalid:
                with pytest.raises(InvalidEmail):
                    normalize_email(row["email"])
            else:
                assert normalize_email(row["email"]) == row["email"].strip().lower()

    @given(st.emails())
    def test_every_generated_address_is_accepted_and_idempotent(self, email):
        normalized = normalize_email(email)
        assert normalized == normalized.strip().lower()
        assert normalize_email(normalized) == normalized

    @given(st.text(max_size=40))
    def test_arbitrary_text_never_crashes(self, text):
        try:
            result = normalize_email(text)
        except InvalidEmail as error:
            assert str(error)
        else:
            assert result.count("@") == 1


    @given(st.one_of(st.emails(), st.from_regex(identity._COMMON_EMAIL, fullmatch=True)))
    def test_the_fast_path_agrees_with_email_validator(self, email):
        try:
            expected = validate_email(email, check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            expected = None
        try:
            normalized = normalize_email(email)
        except InvalidEmail:
            normalized = None
        if len(email.split("@")[0]) > 64:
            assert normalized is None  # stricter than email-validator: RFC 5321's limit
        else:
            assert normalized == (unicodedata.normalize("NFC", expected) if expected else None)

    def test_no_network_lookup(self, monkeypatch):
        def refuse(*args, **kwargs):
            raise AssertionError("a DNS lookup was made")

        monkeypatch.setattr("socket.getaddrinfo", refuse)
        monkeypatch.setattr("dns.resolver.Resolver.resolve", refuse, raising=False)
        address = "Ann@Unregistered-Domain-Nobody-Owns.example"
        assert normalize_email(address) == address.lower()
        assert normalize_email("ann@bücher.example") == "ann@bücher.example"


class TestNormalizePhone:
    @pytest.mark.parametrize(
        ("raw", "region", "expected"),
        [
            ("(415) 555-0100", "US", "+14155550100"),
            ("+44 20 7946 0958", "US", "+442079460958"),
            ("020 7946 0958", "GB", "+442079460958"),
            ("+14155550100", None, "+14155550100"),
            ("  +1 415.555.0100 ", "US", "+14155550100"),
            ("030 123456", "DE", "+4930123456"),
        ],
    )
    def test_numbers_become_e164(self, raw, region, expected):
        assert normalize_phone(raw, region) == expected

    def test_region_is_case_insensitive(self):
        assert normalize_phone("020 7946 0958", "gb") == "+442079460958"

    @pytest.mark.parametrize(
        ("raw", "region", "reason"),
        [
            ("1-800-FLOWERS", "US", "letters"),
            ("+1 415 555 0100 ext. 12", "US", "extension"),
            ("415-555-0100 x12", "US", "extension"),
            ("call me maybe", "US", "not a phone number"),
            ("555", "US", "not a valid phone number"),
            ("+1 555 0100", "US", "not a valid"),
            ("", "US", "empty"),
            ("   ", "US", "empty"),
            ("415 555 0100", "", "region"),
            ("415 555 0100", "XX", "region 'XX' is unknown"),
        ],
    )
    def test_unusable_numbers_say_why(self, raw, region, reason):
        with pytest.raises(InvalidPhone, match=reason):
            normalize_phone(raw, region)

    @pytest.mark.parametrize("raw", [None, 4155550100])
    def test_non_text_is_refused(self, raw):
        with pytest.raises(InvalidPhone):
            normalize_phone(raw, "US")

    def test_hostile_data_set(self, hostile_contacts):
        results = {}
        for row in hostile_contacts:
            if "phone" in row:
                try:
                    results[row["phone"]] = normalize_phone(row["phone"], "US")
                except InvalidPhone:
                    results[row["phone"]] = None
        assert results == {
            "(415) 555-0100": "+14155550100",
            "1-800-FLOWERS": None,
            "call me maybe": None,
            "+44 20 7946 0958": "+442079460958",
            "+1 415 555 0100 ext. 12": None,
            "+14155550100": "+14155550100",
        }

    @given(st.text(max_size=30))
    def test_arbitrary_text_never_crashes(self, text):
        try:
            result = normalize_phone(text, "US")
        except InvalidPhone as error:
            assert str(error)
        else:
            assert result.startswith("+") and result[1:].isdigit()


def index(links=None, contacts=()):
    return IdentityIndex.build(links=links or {}, contacts=contacts)


class TestMatch:
    def test_existing_link_wins_over_email(self):
        idx = index({"h1": 1}, [KnownContact(1, "old@example.com", linked_external_id="h1"),
                                KnownContact(2, "new@example.com")])
        result = match(IncomingKeys("h1", email="other@example.com"), idx)
        assert (result.kind, result.contact_id) == (MatchKind.LINK, 1)

    def test_email_matches_an_unlinked_contact(self):
        idx = index(contacts=[KnownContact(7, "ann@example.com")])
        result = match(IncomingKeys("h1", email="ann@example.com"), idx)
        assert (result.kind, result.contact_id) == (MatchKind.EMAIL, 7)

    def test_email_of_a_contact_held_by_another_record_is_a_duplicate(self):
        idx = index({"h1": 7}, [KnownContact(7, "ann@example.com", linked_external_id="h1")])
        result = match(IncomingKeys("h2", email="ann@example.com"), idx)
        assert result.kind is MatchKind.DUPLICATE
        assert "h1" in result.reason
        assert not result.usable

    def test_phone_matches_when_the_record_has_no_email(self):
        idx = index(contacts=[KnownContact(3, "ann@example.com", "+14155550100")])
        result = match(IncomingKeys("h1", phone="+14155550100"), idx)
        assert (result.kind, result.contact_id) == (MatchKind.PHONE, 3)

    def test_phone_matches_when_the_contact_has_no_email(self):
        idx = index(contacts=[KnownContact(3, None, "+14155550100")])
        result = match(IncomingKeys("h1", email="ann@example.com", phone="+14155550100"), idx)
        assert (result.kind, result.contact_id) == (MatchKind.PHONE, 3)

    def test_same_phone_with_a_different_email_is_a_different_person(self):
        idx = index(contacts=[KnownContact(3, "ph1@example.com", "+14155550100")])
        result = match(IncomingKeys("h9", email="samephone@example.com", phone="+14155550100"), idx)
        assert result.kind is MatchKind.NEW

    def test_phone_of_several_contacts_without_email_is_ambiguous(self):
        idx = index(contacts=[KnownContact(3, None, "+14155550100"), KnownContact(4, None, "+14155550100")])
        result = match(IncomingKeys("h1", phone="+14155550100"), idx)
        assert result.kind is MatchKind.AMBIGUOUS

    def test_phone_of_a_contact_held_by_another_record_does_not_match(self):
        idx = index({"h1": 3}, [KnownContact(3, None, "+14155550100", linked_external_id="h1")])
        assert match(IncomingKeys("h2", phone="+14155550100"), idx).kind is MatchKind.NEW

    def test_nothing_known_makes_a_new_contact(self):
        assert match(IncomingKeys("h1", email="ann@example.com"), index()).kind is MatchKind.NEW

    def test_a_record_without_keys_is_unidentified(self):
        result = match(IncomingKeys("h1"), index())
        assert result.kind is MatchKind.UNIDENTIFIED
        assert "neither" in result.reason

    def test_a_linked_record_without_email_still_matches_its_link(self):
        idx = index({"h1": 5}, [KnownContact(5, "ann@example.com", linked_external_id="h1")])
        assert match(IncomingKeys("h1"), idx).kind is MatchKind.LINK

    def test_a_linked_record_taking_another_contacts_email_is_a_duplicate(self):
        idx = index({"h1": 1}, [KnownContact(1, "a@example.com", linked_external_id="h1"),
                                KnownContact(2, "b@example.com")])
        result = match(IncomingKeys("h1", email="b@example.com"), idx)
        assert result.kind is MatchKind.DUPLICATE
        assert "already belongs" in result.reason

    def test_a_link_without_external_id_is_completed_by_email(self):
        idx = index(contacts=[KnownContact(5, "ann@example.com", linked_external_id=None)])
        assert match(IncomingKeys("m1", email="ann@example.com"), idx).contact_id == 5


class TestMatchPage:
    def test_two_new_records_with_one_email_make_one_contact_and_a_duplicate(self):
        results = match_page(
            [IncomingKeys("h1", email="dup@example.com"), IncomingKeys("h2", email="dup@example.com")], index()
        )
        assert [r.kind for r in results] == [MatchKind.NEW, MatchKind.DUPLICATE]
        assert "h1" in results[1].reason

    def test_two_records_matching_one_contact_by_email_are_caught(self):
        idx = index(contacts=[KnownContact(1, "ann@example.com")])
        results = match_page([IncomingKeys("h1", email="ann@example.com"),
                              IncomingKeys("h2", email="ann@example.com")], idx)
        assert [r.kind for r in results] == [MatchKind.EMAIL, MatchKind.DUPLICATE]

    def test_a_record_matching_by_phone_a_contact_claimed_in_the_page_is_not_merged(self):
        idx = index(contacts=[KnownContact(1, None, "+14155550100")])
        results = match_page([IncomingKeys("h1", phone="+14155550100"), IncomingKeys("h2", phone="+14155550100")], idx)
        assert [r.kind for r in results] == [MatchKind.PHONE, MatchKind.NEW]

    def test_linked_records_are_decided_first(self):
        # h2 (later in the page) holds contact 1; h1 arrives first with the same email.
        idx = index({"h2": 1}, [KnownContact(1, "ann@example.com", linked_external_id="h2")])
        results = match_page([IncomingKeys("h1", email="ann@example.com"),
                              IncomingKeys("h2", email="ann@example.com")], idx)
        assert [r.kind for r in results] == [MatchKind.DUPLICATE, MatchKind.LINK]

    def test_an_email_released_by_a_linked_record_is_free_for_another(self):
        # h1 moved from a@ to b@; h2 now has a@ and is a new person, not h1's duplicate.
        idx = index({"h1": 1}, [KnownContact(1, "a@example.com", linked_external_id="h1")])
        results = match_page([IncomingKeys("h2", email="a@example.com"),
                              IncomingKeys("h1", email="b@example.com")], idx)
        assert [r.kind for r in results] == [MatchKind.NEW, MatchKind.LINK]

    def test_an_email_taken_by_a_linked_record_in_the_page_makes_the_other_a_duplicate(self):
        idx = index({"h1": 1}, [KnownContact(1, "a@example.com", linked_external_id="h1")])
        results = match_page([IncomingKeys("h2", email="b@example.com"),
                              IncomingKeys("h1", email="b@example.com")], idx)
        assert [r.kind for r in results] == [MatchKind.DUPLICATE, MatchKind.LINK]

    def test_the_hostile_twins_by_case_become_one_contact(self, hostile_contacts):
        rows = [row for row in hostile_contacts if row["email"].lower() == "dup@example.com"]
        keys = [IncomingKeys(str(i), email=normalize_email(row["email"])) for i, row in enumerate(rows)]
        assert [r.kind for r in match_page(keys, index())] == [MatchKind.NEW, MatchKind.DUPLICATE]

    @given(
        st.lists(
            st.tuples(st.sampled_from(["a@x.io", "b@x.io", "c@x.io", None]), st.sampled_from(["+14155550100", None])),
            max_size=12,
        )
    )
    def test_no_two_records_of_a_page_ever_share_a_contact_or_a_new_email(self, rows):
        idx = index({"0": 1}, [KnownContact(1, "a@x.io", linked_external_id="0"),
                               KnownContact(2, None, "+14155550100")])
        keys = [IncomingKeys(str(i), email, phone) for i, (email, phone) in enumerate(rows)]
        results = match_page(keys, idx)
        claimed = [r.contact_id for r in results if r.contact_id is not None]
        assert len(claimed) == len(set(claimed))
        new_emails = [k.email for k, r in zip(keys, results, strict=True) if r.kind is MatchKind.NEW and k.email]
        assert len(new_emails) == len(set(new_emails))


class TestMatchOrder:
    """Link, then normalized email, then E.164 phone."""

    def test_email_wins_over_phone(self):
        idx = index(contacts=[KnownContact(1, "ann@example.com"), KnownContact(2, None, "+14155550100")])
        result = match(IncomingKeys("h1", email="ann@example.com", phone="+14155550100"), idx)
        assert (result.kind, result.contact_id) == (MatchKind.EMAIL, 1)

    def test_link_wins_over_phone(self):
        idx = index({"h1": 1}, [KnownContact(1, None, "+14155550199", linked_external_id="h1"),
                                KnownContact(2, None, "+14155550100")])
        result = match(IncomingKeys("h1", phone="+14155550100"), idx)
        assert (result.kind, result.contact_id) == (MatchKind.LINK, 1)

    def test_a_contact_listed_as_a_duplicate_keeps_its_own_record(self):
        # Two contacts share an email until a reviewer merges them; the second one's own
        # record is not a new duplicate each time it is read.
        idx = index({"h2": 2}, [KnownContact(1, "dup@example.com", linked_external_id="h1"),
                                KnownContact(2, "dup@example.com", linked_external_id="h2")])
        result = match(IncomingKeys("h2", email="dup@example.com"), idx)
        assert (result.kind, result.contact_id) == (MatchKind.LINK, 2)


class TestEmailChanges:
    """An email changed in either system updates the same contact and keeps its links."""

    def test_a_new_email_on_a_linked_record_stays_with_its_contact(self):
        idx = index({"h1": 1}, [KnownContact(1, "old@example.com", linked_external_id="h1")])
        result = match(IncomingKeys("h1", email="new@example.com"), idx)
        assert (result.kind, result.contact_id) == (MatchKind.LINK, 1)

    def test_a_record_whose_id_follows_its_email_is_found_by_its_stable_link(self):
        # Mailchimp's member id is the MD5 of the address: after a change the record comes
        # back under a new id, which the pull links through the stable contact_id.
        idx = index({"md5-of-new": 1}, [KnownContact(1, "old@example.com", linked_external_id="md5-of-old")])
        result = match(IncomingKeys("md5-of-new", email="new@example.com"), idx)
        assert (result.kind, result.contact_id) == (MatchKind.LINK, 1)

    def test_the_old_address_then_belongs_to_nobody(self):
        idx = index({"h1": 1}, [KnownContact(1, "old@example.com", linked_external_id="h1")])
        results = match_page([IncomingKeys("h1", email="new@example.com"),
                              IncomingKeys("h2", email="old@example.com")], idx)
        assert [(r.kind, r.contact_id) for r in results] == [(MatchKind.LINK, 1), (MatchKind.NEW, None)]

    def test_the_new_address_is_known_for_the_rest_of_the_page(self):
        idx = index({"h1": 1}, [KnownContact(1, "old@example.com", linked_external_id="h1")])
        results = match_page([IncomingKeys("h2", email="new@example.com"),
                              IncomingKeys("h1", email="new@example.com")], idx)
        assert [r.kind for r in results] == [MatchKind.DUPLICATE, MatchKind.LINK]


class TestLikelyDuplicatePairs:
    def test_same_phone_under_two_emails_is_a_pair(self):
        rows = [(2, "+14155550100", "b@example.com"), (1, "+14155550100", "a@example.com")]
        assert likely_duplicate_pairs(rows) == [(1, 2, "+14155550100", "a@example.com", "b@example.com")]

    def test_same_phone_and_same_email_is_no_pair(self):
        rows = [(1, "+14155550100", "a@example.com"), (2, "+14155550100", "a@example.com")]
        assert likely_duplicate_pairs(rows) == []

    def test_different_phones_are_no_pair(self):
        assert likely_duplicate_pairs([(1, "+14155550100", "a@x.io"), (2, "+14155550101", "b@x.io")]) == []

    def test_three_people_on_one_line_make_three_pairs(self):
        rows = [(3, "+14155550100", "c@x.io"), (1, "+14155550100", "a@x.io"), (2, "+14155550100", "b@x.io")]
        assert [(a, b) for a, b, *_ in likely_duplicate_pairs(rows)] == [(1, 2), (1, 3), (2, 3)]

    @given(st.lists(st.tuples(st.integers(1, 30), st.sampled_from(["+14155550100", "+14155550101"]),
                              st.sampled_from(["a@x.io", "b@x.io", "c@x.io"])), unique_by=lambda row: row[0]))
    def test_each_pair_once_lower_id_first(self, rows):
        pairs = likely_duplicate_pairs(rows)
        assert all(a < b for a, b, *_ in pairs)
        assert len({(a, b) for a, b, *_ in pairs}) == len(pairs)
        by_id = {contact_id: (phone, email) for contact_id, phone, email in rows}
        for a, b, phone, email_a, email_b in pairs:
            assert by_id[a] == (phone, email_a) and by_id[b] == (phone, email_b) and email_a != email_b
