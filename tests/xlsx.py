"""Workbooks as Excel saves them. openpyxl writes each text into its cell (an inline string);
Excel, and the exports marketplaces offer, keep every distinct text once in the workbook's
shared table (xl/sharedStrings.xml), each cell holding its text's index. ``as_excel_saves``
turns the first kind into the second, so tests read the table real files come with."""

import io
import re
import zipfile
from collections.abc import Callable

SHARED_STRINGS_TYPE = (
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
)
SHARED_STRINGS_REL = (
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"
)
MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_PART = f'<Override PartName="/xl/sharedStrings.xml" ContentType="{SHARED_STRINGS_TYPE}"/>'
_REL = f'<Relationship Id="rIdStrings" Type="{SHARED_STRINGS_REL}" Target="sharedStrings.xml"/>'
_INLINE = re.compile(
    rb'<c ([^>]*?)t="inlineStr"([^>]*)><is>(<t[^>]*/>|<t[^>]*>.*?</t>)</is></c>', re.S
)


def as_excel_saves(workbook: bytes) -> bytes:
    """The same workbook with its texts moved to a shared table, in order of first use."""
    table: dict[bytes, int] = {}

    def shared(match: re.Match[bytes]) -> bytes:
        index = table.setdefault(match[3], len(table))
        return b'<c %st="s"%s><v>%d</v></c>' % (match[1], match[2], index)

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(workbook)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.startswith("xl/worksheets/"):
                data = _INLINE.sub(shared, data)
            elif info.filename == "[Content_Types].xml":
                data = data.replace(b"</Types>", _PART.encode() + b"</Types>")
            elif info.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(b"</Relationships>", _REL.encode() + b"</Relationships>")
            target.writestr(info, data)
        target.writestr("xl/sharedStrings.xml", shared_strings(table))
    return out.getvalue()


def shared_strings(texts: dict[bytes, int] | list[bytes]) -> bytes:
    """A shared table of these texts, each an XML ``<t>`` element (or a run of them)."""
    items = b"".join(b"<si>%s</si>" % text for text in texts)
    count = len(texts)
    return b'<sst xmlns="%s" count="%d" uniqueCount="%d">%s</sst>' % (
        MAIN_NS.encode(),
        count,
        count,
        items,
    )


def with_part(workbook: bytes, name: str, change: Callable[[bytes], bytes]) -> bytes:
    """The workbook with one part (``xl/worksheets/sheet1.xml``, ...) changed."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(workbook)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, change(data) if info.filename == name else data)
    return out.getvalue()
