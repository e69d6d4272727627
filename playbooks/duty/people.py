"""A 人员 sheet (the duty directory) read into people, all or nothing: any bad row refuses the whole
sheet, every problem listed.

The rows are what the shell read from the .xlsx or .csv (lists of cells); the first row is the header
and rows are numbered as the spreadsheet numbers them (the header is row 1). The columns, in any order:

| column | required | what it holds |
|---|---|---|
| 编号 | yes | the person's id: ASCII letters, digits and . _ : - (it travels in keys); once in the sheet |
| 姓名 | yes | the name, exactly as written |
| 单位 | yes | the unit: its name as the plan writes it, or its id |
| 岗位 | yes | the post usually stood: 值班员, 值班主任 (or 值班领导, the same post), 带班领导 |
| 领导干部 | yes | may stand as 带班领导: 是/否 (also Y/N, 1/0, true/false) |
| 用工 | yes | 正式, 借调, 非正式 or 临时 (临时 is 非正式: neither may stand duty) |
| 手机 | no | an 11-digit mobile number |
| 邮箱 | no | an email address |
| 企业微信 | no | the person's WeCom id |
| 钉钉 | no | the person's DingTalk id |

Any other column is refused, as in a 值班表 (table.py). Names and contacts are personal data: the
shell seals them before the people go on a topic (topics.duty.SealedPerson).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from playbooks.duty.table import TableRefused, cell_text, read_header, refuser
from topics.duty import MOBILE_PATTERN, Employment, Person, Post
from topics.models import ID_PATTERN, RECORD_ID_MAX

COLUMNS = ("编号", "姓名", "单位", "岗位", "领导干部", "用工", "手机", "邮箱", "企业微信", "钉钉")
REQUIRED = ("编号", "姓名", "单位", "岗位", "领导干部", "用工")
POSTS = {"值班员": Post.officer, "值班主任": Post.chief, "值班领导": Post.chief, "带班领导": Post.leader}
EMPLOYMENTS = {"正式": Employment.regular, "借调": Employment.seconded, "非正式": Employment.informal,
               "临时": Employment.informal}
YES, NO = {"是", "y", "yes", "1", "true"}, {"否", "n", "no", "0", "false"}
CHATS = {"企业微信": "wecom", "钉钉": "dingtalk"}
# a pydantic error's field -> the column it came from (what our own checks leave to the model)
_FIELD_COLUMNS = {("id",): "编号", ("name",): "姓名", ("contacts", "mobile"): "手机", ("contacts", "email"): "邮箱"}


def _choice(text: str, choices: Mapping[str, object], column: str, refuse) -> object | None:
    if not text:
        refuse(column, f"no {column}")
    elif text not in choices:
        refuse(column, f"{text!r} is not a {column} ({'/'.join(choices)})")
    else:
        return choices[text]
    return None


def read_people(rows: Sequence[Sequence[object]], *, units: Mapping[str, str], base: Sequence[Person] = ()) -> list[Person]:
    """The base people with the sheet's people added; a person whose 编号 is in base replaces them
    in place (the sheet is the newer word), the others follow in row order.

    units: every unit of the plan, id -> name. Raises TableRefused naming each row and column."""
    header, problems = read_header(rows, COLUMNS, REQUIRED, what="人员 sheet")
    if problems:
        raise TableRefused(problems)
    ids = {name: uid for uid, name in units.items()}
    read: dict[str, Person] = {}
    first_row: dict[str, int] = {}

    for n, raw in enumerate(rows[1:], start=2):
        cells = {name: cell_text(raw[i]) if i < len(raw) else "" for i, name in enumerate(header) if name}
        if not any(cells.values()):
            continue
        bad = len(problems)
        refuse = refuser(problems, n)
        get = cells.get

        pid = get("编号", "")
        if not pid:
            refuse("编号", "no 编号")
        elif len(pid) > RECORD_ID_MAX or not re.match(ID_PATTERN, pid):
            refuse("编号", f"{pid!r} is not an id (ASCII letters, digits and . _ : -, at most {RECORD_ID_MAX})")
        elif pid in first_row:
            refuse("编号", f"{pid!r} is also row {first_row[pid]}'s")
        else:
            first_row[pid] = n
        if not get("姓名"):
            refuse("姓名", "no 姓名")
        unit = get("单位", "")
        unit_id = ids.get(unit, unit)
        if not unit:
            refuse("单位", "no 单位")
        elif unit_id not in units:
            refuse("单位", f"unknown unit {unit!r}")
        post = _choice(get("岗位", ""), POSTS, "岗位", refuse)
        employment = _choice(get("用工", ""), EMPLOYMENTS, "用工", refuse)
        leader = get("领导干部", "").lower()
        if leader not in YES | NO:
            refuse("领导干部", f"{get('领导干部')!r} is not 是 or 否" if leader else "no 领导干部 (是 or 否)")
        mobile = get("手机", "")
        if mobile and not re.match(MOBILE_PATTERN, mobile):
            refuse("手机", f"{mobile!r} is not a mobile number (11 digits, 1 then 3-9)")
        if len(problems) > bad:
            continue
        try:
            person = Person(id=pid, name=get("姓名"), unit_id=unit_id, post=post, is_leader=leader in YES,
                            employment=employment,
                            contacts={"mobile": mobile or None, "email": get("邮箱") or None,
                                      "chat_ids": {key: get(column) for column, key in CHATS.items() if get(column)}})
        except ValidationError as exc:
            # what our checks above leave to the model: a too long name, a malformed email, ...
            for error in exc.errors():
                loc = tuple(str(x) for x in error["loc"])
                column = _FIELD_COLUMNS.get(loc) or next((c for c, k in CHATS.items() if k in loc), ".".join(loc))
                refuse(column, error["msg"])
            continue
        read[pid] = person

    if problems:
        raise TableRefused(problems)
    out = [read.pop(p.id, p) for p in base]
    return [*out, *read.values()]
