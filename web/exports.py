"""Downloads for coordinators: a cycle's reports and the yearly summary, as CSV or XLSX."""
from __future__ import annotations

import io

from flask import Blueprint, Response, abort, current_app, stream_with_context
from flask_babel import get_locale

from infra.spreadsheets import CSV_TYPE, XLSX_TYPE, csv_lines, write_xlsx
from web import services_of
from workflow.errors import NotFound
from workflow.exports import cycle_table, summary_table

bp = Blueprint("exports", __name__)
TABLES = {"export": cycle_table, "summary": summary_table}


@bp.get("/cycles/<int:cycle_id>/<any(export, summary):what>.<any(csv, xlsx):file_format>")
def download(cycle_id: int, what: str, file_format: str):
    language = str(get_locale() or "de")
    database = services_of(current_app).database
    make_table = TABLES[what]
    with database.unit_of_work() as uow:
        try:
            table = make_table(uow, cycle_id, language)
        except NotFound:
            abort(404)
        headers = {"Cache-Control": "private, no-store",
                   "Content-Disposition": f'attachment; filename="{table.filename}.{file_format}"'}
        if file_format == "xlsx":
            workbook = io.BytesIO()  # a zip file: written whole, then sent
            write_xlsx([table], workbook)
            return Response(workbook.getvalue(), mimetype=XLSX_TYPE, headers=headers)
        if what == "summary":  # a few dozen lines, already counted: no second pass
            return Response("".join(csv_lines(table, language)), mimetype=CSV_TYPE,
                            headers=headers)

    def lines():  # streamed: a cycle of 20,000 partners never sits in memory at once
        with database.unit_of_work() as uow:
            yield from csv_lines(make_table(uow, cycle_id, language), language)
    return Response(stream_with_context(lines()), mimetype=CSV_TYPE, headers=headers)
