"""What-if on the log (issue 24 item 1): a period's live records read from the topics, replayed under the plan
in force and a revised plan by the pure core (playbooks.whatif), the report as Markdown, JSON or .xlsx.

Read-only: a plain consumer with no group (nothing committed, no group joined), seeking by timestamp to the
period's start; nothing is produced to any topic. `run_whatif` is what the CLI calls and what an API page
can call.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError
from pydantic import ValidationError

from playbooks.plan import Plan, load_plan
from playbooks.whatif import (
    ASPECT_LABEL,
    CHANGE_LABEL,
    BEIJING,
    Baseline,
    History,
    Tally,
    WhatIfReport,
    load_revision,
    report_of,
    tally,
)
from topics.catalog import INCIDENT_COMMANDS, INCIDENTS_REPORTED
from topics.models import IncidentCommand, IncidentReported

# A producer's clock may run a little behind the broker's order: a partition is read this far past the
# period's end before it is left, so a record stamped inside the period is not missed.
READ_PAST_END = timedelta(minutes=5)


def read_history(bootstrap: str, start: datetime, until: datetime, *, timeout_ms: int = 15000) -> History:
    """Reports and commands stamped in [start, until] (the record's log timestamp: when it reached the
    service), each partition from the first offset at `start` to its end as it is now."""
    topics = {INCIDENTS_REPORTED.name: IncidentReported, INCIDENT_COMMANDS.name: IncidentCommand}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=timeout_ms, client_id="yingji-whatif")
    records: list[tuple[datetime, IncidentReported | IncidentCommand]] = []
    unreadable = 0
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return History(start=start, until=until)
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = consumer.offsets_for_times({tp: int(start.timestamp() * 1000) for tp in tps})
        pending = {}
        for tp in tps:
            found = starts.get(tp)
            if found is not None and found.offset < ends[tp]:
                consumer.seek(tp, found.offset)
                pending[tp] = ends[tp]
        stop_ms = int((until + READ_PAST_END).timestamp() * 1000)
        until_ms = int(until.timestamp() * 1000)
        quiet_since = time.monotonic()
        while pending:
            batch = consumer.poll(timeout_ms=1000, max_records=5000)
            if batch:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > timeout_ms / 1000:  # the broker went away mid-read
                raise KafkaTimeoutError(f"no records for {timeout_ms} ms with {len(pending)} partitions unread")
            for tp, messages in batch.items():
                if tp not in pending:
                    continue
                model = topics[tp.topic]
                for m in messages:
                    if m.offset >= pending[tp] or m.timestamp > stop_ms:
                        pending.pop(tp, None)
                        consumer.pause(tp)
                        break
                    if m.timestamp > until_ms:
                        continue
                    try:
                        rec = model.model_validate_json(m.value)
                    except ValidationError:  # it went to the dead letters when the worker met it
                        unreadable += 1
                        continue
                    records.append((datetime.fromtimestamp(m.timestamp / 1000, timezone.utc), rec))
            for tp in list(pending):  # a partition read to its end as it was
                if consumer.position(tp) >= pending[tp]:
                    pending.pop(tp)
    finally:
        consumer.close(autocommit=False)
    records.sort(key=lambda r: r[0])
    return History(start=start, until=until, records=records, unreadable=unreadable)


# The job a forked process reads: inherited at the fork, never pickled (a year is 100,000 records). Set
# only for the span of one compare_parallel, by the process that forks.
_JOB: tuple[History, Plan, Plan, int] | None = None


def _share(i: int) -> Tally:
    assert _JOB is not None
    history, in_force, revised, n = _JOB
    return tally(history, in_force, revised, part=(i, n))


def compare_parallel(history: History, in_force: Plan, revised: Plan, *, workers: int | None = None,
                     revised_source: str = "", baseline: Baseline | None = None) -> WhatIfReport:
    """The period's incidents shared among processes (one a core by default; a replay is one core's work,
    the incidents independent), the report made of their tallies. baseline (in one process only): the plan in
    force's outcomes kept between questions (playbooks.whatif.what_if), as the API keeps them per replica."""
    global _JOB
    n = workers or os.cpu_count() or 1
    if n <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return report_of(history, in_force, revised, [tally(history, in_force, revised, baseline=baseline)],
                         revised_source=revised_source)
    _JOB = (history, in_force, revised, n)
    pool = multiprocessing.get_context("fork").Pool(n)
    try:
        shares = pool.map(_share, range(n))
    except BaseException:
        pool.terminate()
        raise
    else:
        # an orderly end: each worker takes its sentinel and exits. The context manager's terminate() can kill a
        # worker blocked in the task queue's get while it holds the queue's lock, and the other then waits for that
        # lock for ever: a CI run's smoke bench hung so, the parent joining (CPython's Pool.terminate race)
        pool.close()
    finally:
        pool.join()
        _JOB = None
    return report_of(history, in_force, revised, shares, revised_source=revised_source)


def run_whatif(plan_dir: Path, start: datetime, until: datetime, *, bootstrap: str,
               in_force: Plan | None = None, workers: int | None = None,
               baseline: Baseline | None = None) -> WhatIfReport:
    """The revised plan validated (RevisionRefused names file, line and field), the period read, compared.
    From a threaded server (the API), pass workers=1: forking a process that runs threads is unsafe."""
    revised = load_revision(plan_dir)
    history = read_history(bootstrap, start, until)
    return compare_parallel(history, in_force or load_plan(), revised, workers=workers, revised_source=str(plan_dir),
                            baseline=baseline)


def to_xlsx(report: WhatIfReport) -> bytes:
    """Five sheets as the office reads them: 概况, 修订内容, 差异, 单位, 规则 (times in Beijing time); a sixth, 演练预期,
    over a drill scenario."""
    from services.duty.files import write_xlsx  # openpyxl: loaded only for a workbook

    t = report.totals

    def bj(at: datetime) -> str:
        return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")

    summary = [
        ["项目", "现行预案", "修订稿"],
        ["预案版本", report.plan_in_force, report.revised_plan],
        ["期间（北京时间）", bj(report.period_from), bj(report.period_to)],
        ["事件", t.incidents, t.incidents],
        ["结果不同的事件", "", t.differing],
        ["漏报（逾期未报）", t.breaches_before, t.breaches_after],
        ["迟报", t.late_before, t.late_after],
        ["督办步骤", t.escalation_steps_before, t.escalation_steps_after],
        ["通知", t.notices_before, t.notices_after],
        ["无法受理", t.refused_before, t.refused_after],
    ]
    diffs = [["事件", "类型", "属地", "接报时间", "方面", "项目", "现行预案", "修订稿", "规则", "预案条款", "依据", "涉及单位"]]
    for c in report.incidents:
        for d in c.differences:
            diffs.append([c.incident_id, c.type_name, c.street or "", bj(c.received_at), ASPECT_LABEL[d.aspect],
                          d.subject, d.before or "", d.after or "", d.rule, d.section,
                          "；".join(r.text for r in d.reasons), "、".join(d.units)])
    units = [["单位", "编号", "涉及事件", "差异", "牵头（现行）", "牵头（修订）", "通知（现行）", "通知（修订）",
              "漏报（现行）", "漏报（修订）"]]
    units += [[u.unit, u.unit_id, u.incidents, u.differences, u.led_before, u.led_after, u.notices_before,
               u.notices_after, u.breaches_before, u.breaches_after] for u in report.units]
    rules = [["规则", "预案条款", "涉及事件", "差异"]] + [[r.rule, r.section, r.incidents, r.differences]
                                                         for r in report.rules]
    changes = [["文件", "位置", "变化", "依据", "我方选择", "现行预案", "修订稿"]]
    changes += [[c.file, c.path, CHANGE_LABEL[c.change], c.basis or "", "是" if c.our_choice else "", c.before or "",
                 c.after or ""] for c in report.changes]
    sheets = {"概况": summary, "修订内容": changes, "差异": diffs, "单位": units, "规则": rules}
    if (s := report.scenario) is not None:  # over a drill scenario (7.2.1): its expectations under both plans
        sheets["演练预期"] = [
            ["演练脚本", f"{s.name}（{s.scenario}）"], ["预期项数", s.expectations],
            ["现行预案不符", s.failed_before], ["修订稿不符", s.failed_after],
            ["修订稿无法运行", "；".join(s.refused_after)], [],
            ["事件", "预期项目", "预期", "现行预案", "现行符合", "修订稿", "修订稿符合"]] + [
            [c.incident, c.label, c.expected, c.before, "是" if c.passed_before else "否", c.after,
             "是" if c.passed_after else "否"] for c in s.changed]
    return write_xlsx(sheets)
