"""The language IDs of the WSUS protocol: GetConfigData offers languages and ServerSyncFilter selects them by Windows
locale ID (1033 for English), while update metadata and upmirror's options name them by code (``en``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from upmirror import wsus

# Code -> Windows locale ID. Neutral codes without a locale of their own ("no", "pt") take their neutral IDs.
LOCALE_IDS: Final[dict[str, int]] = {
    "ar": 1025, "bg": 1026, "cs": 1029, "da": 1030, "de": 1031, "el": 1032, "en": 1033, "es": 3082, "et": 1061,
    "fi": 1035, "fr": 1036, "he": 1037, "hi": 1081, "hr": 1050, "hu": 1038, "it": 1040, "ja": 1041, "ko": 1042,
    "lt": 1063, "lv": 1062, "nb": 1044, "nl": 1043, "no": 20, "pl": 1045, "pt": 22, "pt-BR": 1046, "pt-PT": 2070,
    "ro": 1048, "ru": 1049, "sk": 1051, "sl": 1060, "sr": 2074, "sv": 1053, "th": 1054, "tr": 1055, "uk": 1058,
    "zh-CN": 2052, "zh-HK": 3076, "zh-TW": 1028,
}  # fmt: skip
CODES: Final[dict[int, str]] = {locale: code for code, locale in LOCALE_IDS.items()}
# "All languages": what a WSUS server lists first among the languages it offers.
ALL_LANGUAGES: Final = 0


# What update XML says for "every language": the specification's NeutralLanguage value, and WSUS's "all".
NEUTRAL: Final = frozenset({"all", "neutrallanguage"})
# upmirror's language codes (model.Language): a primary tag in lower case, then up to two subtags.
CODE_SHAPE: Final = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}")
_KNOWN: Final[dict[str, str]] = {code.lower(): code for code in wsus.LANGUAGES}


def metadata_languages(codes: Iterable[str]) -> list[str]:
    """The upmirror codes of the languages update XML names (``upd:Language``): known codes in upmirror's spelling
    whatever their case (``zh-cn`` is ``zh-CN``); "all" and NeutralLanguage name no language of their own; a code of
    another shape is left out (an update left with none is neutral: taken for every language, never lost)."""
    found: dict[str, None] = {}
    for code in codes:
        lowered = code.strip().lower()
        if lowered in NEUTRAL:
            continue
        known = _KNOWN.get(lowered)
        if known is None:
            primary, _, rest = code.strip().partition("-")
            known = f"{primary.lower()}-{rest}" if rest else primary.lower()
        if CODE_SHAPE.fullmatch(known):
            found[known] = None
    return list(found)


def locale_id(code: str) -> int | None:
    return LOCALE_IDS.get(code)


def language_name(code: str) -> str:
    return wsus.LANGUAGES.get(code, code)
