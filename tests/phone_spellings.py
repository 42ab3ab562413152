"""Phones as providers report them and as people write them, for the property tests of
the one phone rule (``wahub.domain.phones.phone_lookup_forms``)."""

from __future__ import annotations

import phonenumbers
from hypothesis import strategies as st

# Every country calling code libphonenumber has a plan for, non-geographic ones included.
CALLING_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
# Reported by a provider: digits, ``+digits``, or a WhatsApp person id.
REPORTED_SHAPES = ["+{}", "{}", "{}@s.whatsapp.net", "{}@c.us"]


@st.composite
def reported_phones(draw: st.DrawFn) -> str:
    """A member's phone as a provider may report it: a country code and a national
    number of one of the lengths its plan allows, its digits drawn at random (so mostly
    numbers libphonenumber does not know as valid, like a newly allocated range)."""
    code = draw(st.sampled_from(CALLING_CODES))
    region = phonenumbers.region_code_for_country_code(code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    assert metadata is not None
    assert metadata.general_desc is not None
    lengths = [n for n in metadata.general_desc.possible_length if n > 0] or [8]
    length = draw(st.sampled_from(lengths))
    national = draw(st.text("0123456789", min_size=length, max_size=length))
    return draw(st.sampled_from(REPORTED_SHAPES)).format(f"{code}{national}")


@st.composite
def spaced(draw: st.DrawFn, e164: str) -> str:
    """``e164`` with spaces, dashes or dots between random groups of its digits."""
    digits = e164[1:]
    cuts = sorted(draw(st.sets(st.integers(1, len(digits) - 1), max_size=4)))
    groups = [digits[a:b] for a, b in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    return "+" + draw(st.sampled_from([" ", "-", ".", " - "])).join(groups)


def documented_spellings(stored: str, spaced_form: str) -> list[tuple[str, str | None]]:
    """Every way the lookup documents to write the stored ``+digits`` number, each with
    the ``WAHUB_DEFAULT_REGION`` it is read under: E.164, spaced or dashed, ``00``,
    without ``+`` (no region), a WhatsApp person id, the international format, and the
    national format (trunk prefix) under the number's region when the number is in a
    known range."""
    digits = stored[1:]
    number = phonenumbers.parse(stored, None)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    spellings: list[tuple[str, str | None]] = [
        (stored, None),
        (stored, "DE"),  # an international number ignores the default region
        (spaced_form, None),
        ("00" + digits, None),
        ("00" + digits, "BR"),
        (digits, None),
        (digits + "@s.whatsapp.net", None),
        (international, None),
        (international.replace(" ", "-"), "US"),
    ]
    # The national format exists only for numbers in a range libphonenumber knows (for
    # others it formats bare digits with no trunk prefix, which nobody writes), and not
    # for non-geographic codes (+800, +888: region "001", no country to be in).
    # Also left out where libphonenumber cannot read its own national format back as the
    # same number (Gabon's 7-digit numbers format as "02 00 00 00", read as 8 digits).
    region = phonenumbers.region_code_for_number(number)
    if phonenumbers.is_valid_number(number) and region != "001":
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        if phonenumbers.parse(national, region) == number:
            spellings.append((national, region))
    return spellings
