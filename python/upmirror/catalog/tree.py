"""The shape of Microsoft Update's category tree as the generator builds it: the company, its product families and
their products, the eleven WSUS classifications with their public GUIDs, a detectoid for each product (what its
updates name as a prerequisite), and the languages updates come in.

Product IDs are fixed (derived from their titles), so the same product has the same ID in every generated catalog
and tests can name products by title.
"""

from __future__ import annotations

import uuid
from typing import Final

from upmirror import wsus
from upmirror.model import Category

_NAMESPACE: Final = uuid.UUID("5b8f0a43-6c1e-4b5e-9a5f-3f3e0d6a1c20")

# Family title -> its products. "Windows" holds the client versions, the server versions and the driver products,
# as on Microsoft Update.
FAMILIES: Final[dict[str, list[str]]] = {
    "Windows": [
        "Windows 10",
        "Windows 10, version 1903 and later",
        "Windows 10 LTSB",
        "Windows 11",
        "Windows Server 2016",
        "Windows Server 2019",
        "Windows Server 2022",
        "Windows Server 2025",
        "Windows Server, version 23H2",
        "Windows 10 and later drivers",
        "Windows 11 Client, version 24H2 and later, Servicing Drivers",
        "Windows Defender Antivirus",
    ],
    "Office": ["Office 2016", "Office 2019", "Office LTSC 2021", "Office LTSC 2024", "Microsoft 365 Apps"],
    "SQL Server": ["SQL Server 2016", "SQL Server 2017", "SQL Server 2019", "SQL Server 2022"],
    "Developer Tools, Runtimes, and Redistributables": [
        "Visual Studio 2019",
        "Visual Studio 2022",
        ".NET 6.0",
        ".NET 8.0",
        "Visual C++ Redistributable",
    ],
    "Exchange": ["Exchange Server 2016", "Exchange Server 2019"],
}

DRIVER_PRODUCTS: Final = (
    "Windows 10 and later drivers",
    "Windows 11 Client, version 24H2 and later, Servicing Drivers",
)
DEFINITION_PRODUCTS: Final = ("Windows Defender Antivirus",)

# Products `catalog revise` adds, in order, under an existing family ("a new product arrives on its own").
FUTURE_PRODUCTS: Final[list[tuple[str, str]]] = [
    ("Windows", "Windows 12"),
    ("Office", "Office LTSC 2027"),
    ("SQL Server", "SQL Server 2025"),
    ("Windows", "Windows Server 2028"),
    ("Developer Tools, Runtimes, and Redistributables", "Visual Studio 2026"),
]

# About thirty of the languages Microsoft Update ships updates in.
LANGUAGES: Final = (
    "en", "de", "fr", "ja", "es", "it", "pt-BR", "pt-PT", "zh-CN", "zh-TW",
    "ko", "ru", "nl", "sv", "da", "fi", "nb", "pl", "cs", "hu",
    "tr", "el", "ar", "he", "th", "uk", "ro", "sk", "sl", "hr",
)  # fmt: skip


COMPANY: Final = "Microsoft"


def category_id(title: str) -> str:
    """The fixed ID of a family or product; the company and the Windows family have their real public GUIDs."""
    if title == COMPANY:
        return wsus.MICROSOFT_COMPANY
    if title == "Windows":
        return wsus.WINDOWS_FAMILY
    return str(uuid.uuid5(_NAMESPACE, title))


def detectoid_id(product_title: str) -> str:
    """The fixed ID of the detectoid that finds a product on a computer."""
    return str(uuid.uuid5(_NAMESPACE, f"detectoid/{product_title}"))


def company() -> Category:
    return Category(id=category_id(COMPANY), kind="company", title=COMPANY)


def family(title: str) -> Category:
    return Category(id=category_id(title), kind="family", title=title, parent=category_id(COMPANY))


def product(family_title: str, title: str) -> Category:
    return Category(id=category_id(title), kind="product", title=title, parent=category_id(family_title))


def classifications() -> list[Category]:
    return [Category(id=guid, kind="classification", title=title) for title, guid in wsus.CLASSIFICATIONS.items()]


def detectoid(product_title: str) -> Category:
    return Category(id=detectoid_id(product_title), kind="detectoid", title=f"{product_title} is installed")


def categories() -> list[Category]:
    """The whole initial tree: the company, its families, then their products, the classifications and the
    products' detectoids."""
    tree = [company(), *(family(title) for title in FAMILIES)]
    tree += [product(family_title, title) for family_title, titles in FAMILIES.items() for title in titles]
    return tree + classifications() + [detectoid(title) for titles in FAMILIES.values() for title in titles]
