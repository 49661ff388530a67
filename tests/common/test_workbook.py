"""An .xlsx file's texts as Excel stores them: one shared table the cells refer to by index,
read from disk (common.workbook) so that memory stays flat whatever the table's size."""

import io
import os
import tracemalloc
import zipfile

import openpyxl
import pytest

from common import workbook
from common.delimited import Columns, FileRefused, Record, TableReader
from tests.xlsx import (
    MAIN_NS,
    SHARED_STRINGS_REL,
    SHARED_STRINGS_TYPE,
    as_excel_saves,
    shared_strings,
    with_part,
)

COLUMNS = Columns(required=("sku", "name"))


def excel_file(texts: list[bytes], rows: list[tuple[int, ...]]) -> bytes:
    """A workbook whose sheet's rows are indexes into this shared table, as Excel writes it."""
    sheet = b"".join(
        b'<row r="%d">%s</row>'
        % (
            n,
            b"".join(
                b'<c r="%s%d" t="s"><v>%d</v></c>' % (col, n, i)
                for col, i in zip((b"A", b"B"), cells, strict=True)
            ),
        )
        for n, cells in enumerate(rows, start=1)
    )
    office = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    package = "http://schemas.openxmlformats.org/package/2006"
    main = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    parts = {
        "[Content_Types].xml": f'<Types xmlns="{package}/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="{main}.sheet.main+xml"/>'
        f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{main}.worksheet+xml"/>'
        f'<Override PartName="/xl/sharedStrings.xml" ContentType="{SHARED_STRINGS_TYPE}"/></Types>',
        "_rels/.rels": f'<Relationships xmlns="{package}/relationships">'
        f'<Relationship Id="rId1" Type="{office}/officeDocument" Target="xl/workbook.xml"/>'
        "</Relationships>",
        "xl/workbook.xml": f'<workbook xmlns="{MAIN_NS}" xmlns:r="{office}">'
        '<sheets><sheet name="Orders" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{package}/relationships">'
        f'<Relationship Id="rId1" Type="{office}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{SHARED_STRINGS_REL}" Target="sharedStrings.xml"/>'
        "</Relationships>",
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
        archive.writestr(
            "xl/worksheets/sheet1.xml",
            b'<worksheet xmlns="%s"><sheetData>%s</sheetData></worksheet>'
            % (MAIN_NS.encode(), sheet),
        )
        archive.writestr("xl/sharedStrings.xml", shared_strings(texts))
    return out.getvalue()


def read_all(content: bytes) -> list[Record]:
    reader = TableReader(io.BytesIO(content), columns=COLUMNS)
    try:
        found = list(reader.records())
    finally:
        reader.close()
    assert all(isinstance(r, Record) for r in found), found
    return [r for r in found if isinstance(r, Record)]


def test_shared_texts_read_as_openpyxl_reads_them() -> None:
    texts = [
        b"<t>sku</t>",
        b"<t>name</t>",
        b"<t>K-1</t>",
        b"<t>Kettle \xc3\xa9 &lt;&amp;&gt;</t>",  # UTF-8 and escapes
        b'<r><rPr><b/></rPr><t>Bold</t></r><r><t xml:space="preserve"> kettle </t></r>',  # runs
        b"<t>K-2</t>",
        b"<t>Caf_x005F_x00e9_</t>",  # Excel's escape of a literal "_x00e9_"
        b"<t/>",
        b'<r><t>\xe6\x9d\xb1\xe4\xba\xac</t></r><rPh sb="0" eb="2"><t>\xe3\x81\xa8</t></rPh>',
    ]
    content = excel_file(texts, [(0, 1), (2, 3), (5, 4), (2, 6), (5, 7), (2, 8)])
    expected = [
        [cell or "" for cell in row]
        for row in openpyxl.load_workbook(io.BytesIO(content), read_only=True)
        .worksheets[0]
        .iter_rows(min_row=2, values_only=True)
    ]
    found = [[r.cells["sku"], r.cells["name"]] for r in read_all(content)]
    assert found == expected
    assert found[0] == ["K-1", "Kettle é <&>"] and found[1] == ["K-2", "Bold kettle "]
    assert found[4] == ["K-1", "東京"]  # a phonetic guide is not part of the text


def test_a_text_longer_than_a_cell_holds_is_refused_as_it_is_read() -> None:
    whole = b"<t>%s</t>" % (b"x" * 32_767)
    content = excel_file([b"<t>sku</t>", b"<t>name</t>", whole], [(0, 1), (0, 2)])
    assert read_all(content)[0].cells["name"] == "x" * 32_767
    longer = [b"<t>sku</t>", b"<t>name</t>", b"<r><t>x</t></r><r>%s</r>" % whole]
    with pytest.raises(FileRefused) as refused:
        read_all(excel_file(longer, [(0, 1), (0, 2)]))
    assert refused.value.problem.error == "text_too_long"
    assert (
        "text 3 of the workbook is longer than the 32,767 characters"
        in refused.value.problem.detail
    )


def test_entities_in_the_table_of_texts_refuse_the_file() -> None:
    """A billion laughs (entities of entities, which expand to gigabytes; five levels here,
    300 KB, so that a parser that expanded them would not hurt the test run)."""
    content = excel_file([b"<t>sku</t>", b"<t>name</t>", b"<t>&lol5;</t>"], [(0, 1), (0, 2)])
    bomb = (
        b'<!DOCTYPE sst [<!ENTITY lol "lol">'
        + b"".join(
            b'<!ENTITY lol%d "%s">' % (n, (b"&lol%d;" % (n - 1) if n > 1 else b"&lol;") * 10)
            for n in range(1, 6)
        )
        + b"]>"
    )
    bombed = with_part(content, "xl/sharedStrings.xml", lambda table: bomb + table)
    with pytest.raises(FileRefused) as refused:
        read_all(bombed)
    assert refused.value.problem.error == "spreadsheet_file"


def test_a_huge_text_in_the_sheet_is_refused_before_it_is_held() -> None:
    """20 MB in one cell of the sheet itself (an inline string, as openpyxl writes them)."""
    content = with_part(
        excel_file([b"<t>sku</t>", b"<t>name</t>"], [(0, 1), (0, 1)]),
        "xl/worksheets/sheet1.xml",
        lambda sheet: sheet.replace(
            b'<c r="B2" t="s"><v>1</v></c>',
            b'<c r="B2" t="inlineStr"><is><t>%s</t></is></c>' % (b"x" * 20_000_000),
        ),
    )
    tracemalloc.start()
    try:
        with pytest.raises(FileRefused) as refused:
            read_all(content)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.problem.error == "text_too_long"
    assert "xl/worksheets/sheet1.xml holds a text longer than" in refused.value.problem.detail
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_a_part_read_whole_is_bounded_by_its_declared_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    content = excel_file([b"<t>sku</t>", b"<t>name</t>"], [(0, 1), (0, 1)])
    monkeypatch.setattr(workbook, "MAX_PART", 100)  # 64 MiB: the first part read is larger
    with pytest.raises(FileRefused) as refused:
        read_all(content)
    assert refused.value.problem.error == "workbook_too_large"
    detail = refused.value.problem.detail
    assert "part [Content_Types].xml unpacks to" in detail and "bytes (at most 100)" in detail


def test_a_workbook_converted_to_shared_texts_reads_the_same_rows() -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in (("sku", "name"), ("A-1", "Mug"), ("A-2", "Mug"), ("A-3", 7)):
        sheet.append(row)
    inline = io.BytesIO()
    book.save(inline)
    shared = as_excel_saves(inline.getvalue())
    assert b"sharedStrings" in shared and b"inlineStr" not in shared
    rows = [r.cells for r in read_all(shared)]
    assert rows == [r.cells for r in read_all(inline.getvalue())]
    assert rows[2] == {"sku": "A-3", "name": "7"}


def test_memory_stays_flat_however_large_the_table_of_texts() -> None:
    """25,000 distinct names of 500 characters: 12.5 MB of text, never all in memory."""
    names = [b"<t>%s</t>" % (b"%06d " % n * 72)[:500] for n in range(25_000)]
    texts = [b"<t>sku</t>", b"<t>name</t>", *names]
    content = excel_file(texts, [(0, 1), *((2 + n, 2 + n) for n in range(25_000))])
    tracemalloc.start()
    try:
        reader = TableReader(io.BytesIO(content), columns=COLUMNS)
        rows = sum(1 for _ in reader.records())
        reader.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == 25_000
    assert peak < 6 * 2**20, f"peak {peak / 2**20:.1f} MiB while reading 12.5 MB of texts"


@pytest.mark.parametrize("index", [2, 99_999, -1])
def test_a_cell_naming_a_text_the_table_does_not_hold_refuses_the_file(index: int) -> None:
    texts = [b"<t>sku</t>", b"<t>name</t>"]
    content = excel_file(texts, [(0, 1), (0, index)])
    with pytest.raises(FileRefused) as refused:
        read_all(content)
    assert refused.value.problem.error == "spreadsheet_file"
    assert "near row 2" in refused.value.problem.detail


def test_the_texts_files_are_closed_with_the_reader() -> None:
    content = excel_file([b"<t>sku</t>", b"<t>name</t>", b"<t>x</t>"], [(0, 1), (2, 2)])
    before = len(os.listdir("/proc/self/fd"))
    assert len(read_all(content)) == 1
    assert len(os.listdir("/proc/self/fd")) == before
