"""Well-known identifiers of Microsoft Update that WSUS administrators recognise: the eleven update classifications
(with their fixed public GUIDs) and the Windows product family, which the default options select."""

from __future__ import annotations

from typing import Final

CRITICAL_UPDATES: Final = "e6cf1350-c01b-414d-a61f-263d14d133b4"
SECURITY_UPDATES: Final = "0fa1201d-4330-4fa8-8ae9-b877473b6441"

# Title -> GUID, in the order the WSUS console lists them.
CLASSIFICATIONS: Final[dict[str, str]] = {
    "Critical Updates": CRITICAL_UPDATES,
    "Definition Updates": "e0789628-ce08-4437-be74-2495b842f43b",
    "Driver Sets": "77835c8d-62a7-41f5-82ad-f28d1af1e3b1",
    "Drivers": "ebfc1fc5-71a4-4f7b-9aca-3b9a503104a0",
    "Feature Packs": "b54e7d24-7add-428f-8b75-90a396fa584f",
    "Security Updates": SECURITY_UPDATES,
    "Service Packs": "68c5b0a3-d1a6-4553-ae49-01d3a7827828",
    "Tools": "b4832bd8-e735-4761-8daf-37f882276dab",
    "Update Rollups": "28bc880e-0592-4cbf-8f95-c79b17911d5f",
    "Updates": "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83",
    "Upgrades": "3689bdc8-b205-4af4-8d4a-a63924c5e9d5",
}

# The "Windows" product family: selecting it selects every Windows product, present and future.
WINDOWS_FAMILY: Final = "6964aab4-c5b5-43bd-a17d-ffb4346a8e1d"
# The company every Microsoft product family hangs under on Microsoft Update.
MICROSOFT_COMPANY: Final = "56309036-4c77-4dd9-951a-99ee9c246a94"

# WSUS ports: 8530 plain, 8531 TLS.
DEFAULT_PORT: Final = 8530
DEFAULT_TLS_PORT: Final = 8531

# The languages updates come in: code -> name. The codes WSUS offers (en, de, zh-CN, ...), spelt as Microsoft Update
# spells them in update metadata (language-REGION); "nb" and "pt-PT" are the current codes of "no" and "pt". A language
# outside this table is refused where it is set; one the upstream does not offer is refused by the sync.
LANGUAGES: Final[dict[str, str]] = {
    "ar": "Arabic", "bg": "Bulgarian", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "et": "Estonian", "fi": "Finnish", "fr": "French", "he": "Hebrew",
    "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "it": "Italian", "ja": "Japanese", "ko": "Korean",
    "lt": "Lithuanian", "lv": "Latvian", "nb": "Norwegian (Bokmål)", "nl": "Dutch", "no": "Norwegian",
    "pl": "Polish", "pt": "Portuguese", "pt-BR": "Portuguese (Brazil)", "pt-PT": "Portuguese (Portugal)",
    "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian", "sr": "Serbian", "sv": "Swedish",
    "th": "Thai", "tr": "Turkish", "uk": "Ukrainian", "zh-CN": "Chinese (Simplified)",
    "zh-HK": "Chinese (Hong Kong)", "zh-TW": "Chinese (Traditional)",
}  # fmt: skip
